"""The power-cut campaign (issue 4): SIGKILL the device process at every named step of the commit protocol and
the content store and at random moments, during credits and debits; sometimes cut the TPM too.

Size: COFFER_CAMPAIGN=N crash points (default 200); every named step is hit at least 5 times for credits and
for debits. The counts per step are printed and written to test-artifacts/device-campaign.json.
The harness's Driver is tested first: where a random cut lands, a hang, and what a failing test leaves behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.device.harness import Campaign, CampaignError, Driver
from tests.support.swtpm import SwtpmInstance

pytestmark = [pytest.mark.swtpm, pytest.mark.slow]

DEFAULT_POINTS = 200
TARGET = int(os.environ.get("COFFER_CAMPAIGN", DEFAULT_POINTS))
# ~0.35 s of CPU per crash point, nearly all of it the children's start (imports): a quiet host runs the 200
# in 70-100 s, one loaded CPU (PYTHONTRACEMALLOC=25) needed over 600 s, the suite's default. A hang fails
# sooner: the harness reports a child silent for 60 s, with its stacks.
SECONDS_PER_POINT = 6


def closed(d: Driver) -> bool:
    return all(stream is not None and stream.closed for stream in (d.proc.stdin, d.proc.stdout))


def test_a_cut_lands_on_a_request_in_flight_and_no_thread_races_the_reaping(
    swtpm: SwtpmInstance, tmp_path: Path
) -> None:
    threads = threading.active_count()
    with Driver(tmp_path / "data", swtpm.tcti) as d:
        assert d.ready
        assert threading.active_count() == threads  # no timer thread that could signal a reaped pid later
        d.cut_after(0.0)
        time.sleep(0.3)  # the cut is due, but nothing is in flight: the child is not killed between requests
        assert d.proc.poll() is None
        assert d.call("status") is None  # the cut lands on the request in flight
        assert d.finish() == -signal.SIGKILL
    d.kill()  # the child was reaped: no signal goes to its pid, which may be another process's by now
    assert d.finish() == -signal.SIGKILL
    assert closed(d)


def test_a_silent_driver_is_a_hang_with_its_stacks_not_a_cut(swtpm: SwtpmInstance, tmp_path: Path) -> None:
    with Driver(tmp_path / "data", swtpm.tcti) as d:
        assert d.ready
        d.answer_seconds = 1.0  # from now on (a start may take longer on a loaded machine)
        with pytest.raises(CampaignError, match=r"did not answer 'sleep' within 1\.0 s") as failure:
            d.call("sleep", seconds=3600)
        assert d.proc.returncode == -signal.SIGKILL
    assert "in handle" in str(failure.value)  # the child's stack (faulthandler) says where it was stuck
    assert closed(d)


def silent_tpm(stack: contextlib.ExitStack) -> int:
    """Listening sockets on a free port pair (command P, control P+1) that never answer: a stuck TPM."""
    for _ in range(20):
        command = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
        port: int = command.getsockname()[1]
        with contextlib.suppress(OSError):
            stack.enter_context(socket.create_server(("127.0.0.1", port + 1)))
            return port
    raise OSError("no free port pair on 127.0.0.1")


class Interrupted(Exception):
    pass


def _interrupt(signum: int, frame: object) -> None:
    raise Interrupted  # what pytest-timeout's SIGALRM handler does to a test that ran too long


@pytest.mark.parametrize("how", ["hang", "interrupted"])
def test_a_start_that_hangs_or_is_interrupted_leaves_no_driver_behind(tmp_path: Path, how: str) -> None:
    made: list[Driver] = []

    class Impatient(Driver):
        answer_seconds = 1.0 if how == "hang" else 60.0

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            made.append(self)
            super().__init__(*args, **kwargs)

    expected: type[BaseException] = CampaignError if how == "hang" else Interrupted
    previous = signal.signal(signal.SIGUSR2, _interrupt)
    alarm = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGUSR2))
    try:
        with contextlib.ExitStack() as stack:
            port = silent_tpm(stack)
            if how == "interrupted":
                alarm.start()
            with pytest.raises(expected) as failure:
                Impatient(tmp_path / "data", f"swtpm:host=127.0.0.1,port={port}")
    finally:
        alarm.cancel()
        if alarm.ident is not None:
            alarm.join()
        signal.signal(signal.SIGUSR2, previous)
    if how == "hang":  # stuck opening the TPM, says the child's stack
        assert "did not answer 'start'" in str(failure.value)
        assert "in open" in str(failure.value)
    (d,) = made
    assert d.proc.returncode is not None
    assert closed(d)


def test_a_failing_check_leaves_no_driver_behind(swtpm: SwtpmInstance, tmp_path: Path) -> None:
    drivers: list[Driver] = []

    def failing_check() -> None:
        with Driver(tmp_path / "data", swtpm.tcti) as d:
            drivers.append(d)
            assert d.must("status")["phase"] == "not-provisioned"
            raise CampaignError("a check failed")

    with pytest.raises(CampaignError, match="a check failed"):
        failing_check()
    (d,) = drivers
    assert d.proc.returncode == -signal.SIGKILL  # cut, not waited for
    assert closed(d)


@pytest.mark.timeout(max(600, SECONDS_PER_POINT * TARGET))
def test_power_cut_campaign(tmp_path: Path, swtpm_factory, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    target = TARGET
    campaign = Campaign(
        tmp_path, lambda: swtpm_factory(), target=target, seed=int(os.environ.get("COFFER_SEED", 4))
    )
    try:
        report = campaign.run()
    except CampaignError:
        print(json.dumps(campaign.report(), indent=1))
        raise
    out = Path(__file__).resolve().parents[2] / "test-artifacts"
    out.mkdir(exist_ok=True)
    (out / "device-campaign.json").write_text(json.dumps(report, indent=1) + "\n")
    with capsys.disabled():
        print("\npower-cut campaign:", json.dumps(report, indent=1))
    assert report["crash_points"] >= target
    assert campaign.missing() == []
    assert report["tpm_kills"] >= 1
