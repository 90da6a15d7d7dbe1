"""The swtpm fixtures themselves: start, SIGKILL, restart, unix sockets; tpm2-tools can talk to them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from scripts.swtpm import Swtpm
from tests.conftest import SwtpmFactory
from tests.support.swtpm import SwtpmInstance

pytestmark = pytest.mark.swtpm


def _getrandom(tcti: str) -> bytes:
    return subprocess.run(["tpm2_getrandom", "-T", tcti, "8"], capture_output=True, check=True).stdout


def test_tcp_start_kill_restart(swtpm: SwtpmInstance) -> None:
    assert swtpm.tcti.startswith("swtpm:host=127.0.0.1,port=")
    assert len(_getrandom(swtpm.tcti)) == 8
    tcti = swtpm.tcti
    swtpm.kill()
    assert not swtpm.running
    swtpm.start()
    assert swtpm.tcti == tcti
    assert len(_getrandom(swtpm.tcti)) == 8
    swtpm.restart(orderly=True)
    assert len(_getrandom(swtpm.tcti)) == 8
    assert swtpm.ca_cert.exists()
    assert swtpm.ca_bundle.exists()


def test_unix_socket(swtpm_factory: SwtpmFactory) -> None:
    tpm = swtpm_factory(transport="unix")
    assert tpm.tcti.startswith("swtpm:path=")
    assert len(_getrandom(tpm.tcti)) == 8
    tpm.kill()
    tpm.start()
    assert len(_getrandom(tpm.tcti)) == 8


class _Interrupted(Exception):
    pass


def _swtpm_pids(state_dir: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if b"swtpm\0socket" in cmdline and f"dir={state_dir}".encode() in cmdline:
                pids.append(int(proc.name))
    return pids


def test_a_start_interrupted_while_waiting_leaves_no_swtpm(tmp_path: Path) -> None:
    """A test timeout (SIGALRM) or ^C while swtpm comes up: the half-started swtpm is killed, not leaked
    with an open stderr pipe (the campaign's slow CI run found one)."""

    class InterruptedAtReady(Swtpm):
        def _ready(self, port: int | None) -> bool:
            if not super()._ready(port):
                return False  # (a port raced away: start() tries another)
            assert _swtpm_pids(self.state_dir), "swtpm runs while start() waits for it"
            raise _Interrupted

    tpm = InterruptedAtReady(tmp_path)
    with pytest.raises(_Interrupted):
        tpm.start()
    assert not tpm.running
    assert _swtpm_pids(tmp_path) == []
