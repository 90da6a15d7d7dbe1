"""Device commit latency on swtpm, beside a reference without the TPM, measured in the same run.

    python -m bench.device_commit [--rounds N] [--library K]

Prints JSON lines, each {"bench": "device_commit", "case": ..., "ms": {"median", "p99", "max"}, ...}:
- `commit`: one state commit (DESIGN.md "Device state and crash safety"): encrypt the body, write
  `state.next`, fsync it and the directory, TPM2_NV_Increment, rename to `state`, fsync the directory;
- `reference`: the same encrypt + write + fsync + rename + fsync with no TPM increment (the file-system cost);
- `nv_increment`: the counter increment alone;
- `credit`, `purchase`: whole wallet operations on the unlocked device (verify, price, sign in the TPM, HPKE
  seal, commit; the purchase also unwraps Ke in the TPM and re-encrypts a 64 KiB item). The device is
  enrolled, and its credits and orders signed, by the real center's services in this process
  (tests/support/center_services.py), prepared before the timed loops.
The state body holds K library entries (default 200) so its size is realistic. Host numbers: swtpm is fast,
a discrete TPM's NV write and an SD card's fsync are slower (FACTS.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._support import latency_ms
from device_os.core import statedoc
from device_os.core.body import LibraryEntry, StateBody
from device_os.core.device import Device
from device_os.core.store import StateStore
from device_os.settings import DeviceSettings
from scripts.swtpm import Swtpm, copy_state, provision_template
from tests.support.center_services import CenterServices

PIN = "246810"


def _time(fn: Callable[[int], object], rounds: int) -> list[float]:
    samples = []
    for i in range(rounds):
        start = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - start)
    return samples


class _NoCounter:
    """The reference: the same files, no TPM (bench only; never a product counter)."""

    def __init__(self) -> None:
        self.value = 0

    def read(self) -> int:
        return self.value

    def increment(self) -> int:
        self.value += 1
        return self.value


def _body(device_id: str, entries: int) -> StateBody:
    library = {
        f"item{i}": LibraryEntry(
            item_id=f"item{i}",
            order_id=f"order{i}",
            blob=os.urandom(16).hex(),
            mode="now",
            length=123456,
            sha256=hashlib.sha256(b"%d" % i).hexdigest(),
        )
        for i in range(entries)
    }
    return StateBody(device_id=device_id, library=library)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.device_commit")
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--library", type=int, default=200)
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    rounds = args.rounds
    with tempfile.TemporaryDirectory(prefix="coffer-bench-") as tmp:
        root = Path(tmp)
        template = provision_template(root / "template")
        tpm_proc = Swtpm(copy_state(template, root / "tpm"))
        tpm_proc.start()
        try:
            settings = DeviceSettings(data_dir=root / "data", tcti=tpm_proc.tcti, trust_first_center=True)
            device = Device.open(settings)
            try:
                results = _run(device, root, rounds, args.library, template.ca_bundle)
            finally:
                device.close()
        finally:
            tpm_proc.kill()
    for line in results:
        print(json.dumps({"bench": "device_commit", **line}))
    return 0


def _run(device: Device, root: Path, rounds: int, entries: int, ek_ca: Path) -> list[dict[str, Any]]:
    device.provision()
    device.setup(PIN)
    device.unlock(PIN)
    device_id = device.device_id
    aead = device.aead()
    dek = os.urandom(32)
    body = _body(device_id, entries).encode()
    out: list[dict[str, Any]] = []

    def build(counter: int) -> bytes:
        return statedoc.build(counter, body, dek=dek, device_id=device_id, aead=aead)

    # the reference (same files, same fsyncs, no TPM) and the real commit (the device's TPM NV counter),
    # interleaved so both see the same disk and load
    ref_dir, tpm_dir = root / "reference", root / "tpm-commits"
    ref_dir.mkdir()
    tpm_dir.mkdir()
    ref = StateStore(ref_dir, _NoCounter())
    store = StateStore(tpm_dir, device.store._counter_source)  # the device's TPM counter
    for s in (ref, store):
        s.recover()
        s.commit(build, first=True)
    reference: list[float] = []
    commits: list[float] = []
    for _ in range(rounds):
        reference += _time(lambda _i: ref.commit(build), 1)
        commits += _time(lambda _i: store.commit(build), 1)
    increments = _time(lambda _i: device.tpm.counter_increment(), rounds)
    out.append(
        {"case": "reference", "ms": latency_ms(reference), "rounds": rounds, "state_bytes": len(build(1))}
    )
    out.append({"case": "commit", "ms": latency_ms(commits), "rounds": rounds, "state_bytes": len(build(1))})
    out.append({"case": "nv_increment", "ms": latency_ms(increments), "rounds": rounds})
    # whole wallet operations: the commits above moved the shared NV counter under this device's state, so a
    # second device (a new data directory on the same TPM) is set up for them
    device.close()
    fresh = Device.open(
        DeviceSettings(data_dir=root / "data2", tcti=device.settings.tcti, trust_first_center=True)
    )
    try:
        with CenterServices(root / "center", ek_ca) as center:
            out.extend(_wallet_ops(fresh, rounds, center))
    finally:
        fresh.close()
    return out


def _wallet_ops(device: Device, rounds: int, center: CenterServices) -> list[dict[str, Any]]:
    """Credits and purchases whose messages come from the real center's services (in this process, like
    the device core here: no HTTP on either side), prepared before the timed loops."""
    device.provision()
    device.setup(PIN)
    device.unlock(PIN)
    device_id = device.device_id
    wallet = device.wallet()
    center.enroll(device)
    credits = [center.credit(device_id, 1000) for _ in range(rounds)]
    credit_times = _time(lambda i: wallet.apply_credit(credits[i]), rounds)
    content = os.urandom(65536)
    orders = [center.order(device_id, center.add_item(content, title=f"item{i}")) for i in range(rounds)]
    before = device.tpm.commands
    purchase_times = _time(lambda i: wallet.purchase(orders[i][0], [orders[i][1]]), rounds)
    per_purchase = (device.tpm.commands - before) / rounds
    return [
        {"case": "credit", "ms": latency_ms(credit_times), "rounds": rounds},
        {
            "case": "purchase",
            "ms": latency_ms(purchase_times),
            "rounds": rounds,
            "tpm_commands_each": per_purchase,
            "item_bytes": len(content),
        },
    ]


if __name__ == "__main__":
    sys.exit(main())
