"""The swtpm fixtures themselves: start, SIGKILL, restart, unix sockets; tpm2-tools can talk to them."""

from __future__ import annotations

import subprocess

import pytest

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
