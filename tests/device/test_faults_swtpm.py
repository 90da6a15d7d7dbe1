"""Power cuts during setup, PIN change and content writes (real swtpm, the fault hook in a child process)."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from device_os.core.faults import COMMIT_STEPS
from protocol.b64 import b64url_decode, b64url_encode
from tests.device.conftest import CoreCenter
from tests.device.harness import Driver
from tests.support.swtpm import SwtpmInstance

pytestmark = pytest.mark.swtpm
PIN = "246813"
NEW_PIN = "1357902468"
SETUP_BEFORE_COMMIT = ("setup-after-files", "after-write-next", "after-fsync-next")
SETUP_AFTER_COMMIT = ("after-nv-increment", "after-rename", "after-dir-fsync", "setup-after-commit")


Drive = Callable[..., Driver]


@pytest.fixture
def drive() -> Iterator[Drive]:
    """`Driver(...)` whose child is reaped at teardown even when the test fails before its `finish()` (a
    failing assertion or a timeout must not leave a device process and its pipes behind)."""
    started: list[Driver] = []

    def start(data_dir: Path, tcti: str, *, fault: str | None = None) -> Driver:
        d = Driver(data_dir, tcti, fault=fault)
        started.append(d)
        return d

    yield start
    for d in started:
        d.kill()
        d.finish()


def killed(d: Driver) -> None:
    assert d.finish() == -signal.SIGKILL


def enroll_and_fund(d: Driver, real: CoreCenter, amount: int) -> str:
    """The real center attests the driven device (its TPM answers ActivateCredential), enrolls, funds it."""

    def activate(blob: bytes, secret: bytes) -> bytes:
        return b64url_decode(d.must("activate", blob=b64url_encode(blob), secret=b64url_encode(secret)))

    enrolled = real.services.attest(d.must("identity"), activate)
    d.must("enroll", enrollment=enrolled.enrollment, root_jwk=enrolled.root_jwk)
    d.must("credit", credit=real.credit(enrolled.device_id, amount=amount))
    return enrolled.device_id


@pytest.mark.parametrize("step", SETUP_BEFORE_COMMIT + SETUP_AFTER_COMMIT)
def test_power_cut_during_setup(swtpm: SwtpmInstance, tmp_path: Path, step: str, drive: Drive) -> None:
    data = tmp_path / "data"
    d = drive(data, swtpm.tcti)
    d.must("provision")
    d.finish()
    d = drive(data, swtpm.tcti, fault=step)
    assert d.call("setup", pin=PIN) is None
    killed(d)
    d = drive(data, swtpm.tcti)
    status = d.must("status")
    assert not status["tampered"]
    if step in SETUP_BEFORE_COMMIT:
        assert status["phase"] == "not-set-up"  # never bricked: set up again
        d.must("setup", pin=PIN)
    else:
        assert status["phase"] == "locked"  # the first commit happened: finished at start
    d.must("unlock", pin=PIN)
    snap = d.must("inspect")
    assert "setup.next" not in snap["data_listing"]
    assert "state.next" not in snap["data_listing"]
    assert snap["counter"] == snap["tpm_counter"]
    d.finish()


@pytest.mark.parametrize(
    ("step", "pin_after"),
    [
        ("pin-after-files", PIN),
        ("pin-after-marker", NEW_PIN),
        ("pin-after-move-old", NEW_PIN),
        ("pin-after-move-new", NEW_PIN),
    ],
)
def test_power_cut_during_pin_change(
    swtpm: SwtpmInstance, tmp_path: Path, step: str, pin_after: str, real: CoreCenter, drive: Drive
) -> None:
    data = tmp_path / "data"
    d = drive(data, swtpm.tcti)
    d.must("provision")
    d.must("setup", pin=PIN)
    d.finish()
    d = drive(data, swtpm.tcti, fault=step)
    d.must("unlock", pin=PIN)
    assert d.call("change_pin", old=PIN, new=NEW_PIN) is None
    killed(d)
    d = drive(data, swtpm.tcti)
    status = d.must("status")
    assert status["phase"] == "locked"
    tries = status["failed_tries"]
    assert d.must("unlock", pin=pin_after)["failed_tries"] == tries  # the expected PIN works at once
    snap = d.must("inspect")
    assert {"pin.next", "keys.old"}.isdisjoint(snap["data_listing"])
    # The KEM key moved with the PIN (issue 12 #7): a purchase unwraps with it, no wrong-PIN try spent.
    device_id = enroll_and_fund(d, real, 500)
    assert device_id == snap["body"]["device_id"]
    order, stream_bytes = real.order(device_id, "x", 100, b"after a cut" * 1000)
    (tmp_path / "stream").write_bytes(stream_bytes)
    d.must("purchase", order=order, stream=str(tmp_path / "stream"))
    assert d.must("status")["failed_tries"] == tries
    d.finish()


@pytest.mark.parametrize(
    "step", ["content-after-write", "content-after-fsync", "content-after-rename", *COMMIT_STEPS]
)
def test_no_plaintext_on_disk_after_a_cut(
    swtpm: SwtpmInstance, tmp_path: Path, step: str, real: CoreCenter, drive: Drive
) -> None:
    data = tmp_path / "data"
    marker = b"TEMP-FILE-MARKER-5d2a" * 3000
    d = drive(data, swtpm.tcti)
    d.must("provision")
    identity = d.must("setup", pin=PIN)
    d.must("unlock", pin=PIN)
    device_id = enroll_and_fund(d, real, 500)
    assert device_id == identity["device_id"]
    d.finish()
    order, stream_bytes = real.order(device_id, "x", 100, marker)
    (tmp_path / "stream").write_bytes(stream_bytes)
    d = drive(data, swtpm.tcti, fault=step)
    d.must("unlock", pin=PIN)
    assert d.call("purchase", order=order, stream=str(tmp_path / "stream")) is None
    killed(d)
    leftovers = [p for p in data.rglob("*") if p.is_file()]
    for path in leftovers:
        blob = path.read_bytes()
        assert marker[:21] not in blob, path
        assert PIN.encode() not in blob, path
    log = (tmp_path / "driver.log").read_bytes()
    assert marker[:21] not in log
    assert PIN.encode() not in log
    d = drive(data, swtpm.tcti)
    d.must("unlock", pin=PIN)
    snap = d.must("inspect")
    committed = real.item("x") in snap["body"]["library"]
    assert committed == (step in COMMIT_STEPS[2:])  # committed iff the NV increment happened
    assert snap["listing"] == sorted(e["blob"] + ".cfs" for e in snap["body"]["library"].values())
    assert snap["body"]["purses"]["prepaid"] == ({"JPY": 400} if committed else {"JPY": 500})
    d.finish()
