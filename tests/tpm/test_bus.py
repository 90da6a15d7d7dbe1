"""What crosses the TPM bus (the SPI wires on the board) in clear, read at the TCTI seam
(`Tpm.open(tap=...)`), below ESAPI, where a probe on the bus would read it. Secrets travel only in the
salted, parameter-encrypted session (DESIGN.md "TPM discipline")."""

from __future__ import annotations

import secrets

import pytest

from device_os.tpm import Tpm
from device_os.tpm.tcti import command_name
from tests.support.swtpm import SwtpmInstance

pytestmark = pytest.mark.swtpm


def _names(sent: list[bytes]) -> list[str]:
    return [command_name(int.from_bytes(command[6:10], "big")) for command in sent]


def test_the_lockout_authorization_never_crosses_the_bus_in_clear(
    swtpm: SwtpmInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: list[bytes] = []
    real = secrets.token_bytes

    def spy(n: int | None = None) -> bytes:
        value = real(n)
        drawn.append(value)
        return value

    monkeypatch.setattr(secrets, "token_bytes", spy)  # the adapter draws the lockout auth here
    sent: list[bytes] = []
    with Tpm.open(swtpm.tcti, tap=sent.append) as tpm:
        tpm.provision(None)
        assert tpm.da_status().lockout_auth_set
    lockout_auths = [value for value in drawn if len(value) == 32]
    assert lockout_auths  # the test saw the secret it looks for
    assert "HierarchyChangeAuth" in _names(sent)
    for command in sent:
        for value in lockout_auths:
            assert value not in command, command_name(int.from_bytes(command[6:10], "big"))
