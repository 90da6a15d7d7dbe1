"""Tamper paths on a real swtpm (issue 12, finding 5): a tampered device says so without spending a TPM try,
a counter moved by another program is seen at the commit and at unlock, and an in-process tamper reaches the
device's status (what `/v1/health` shows)."""

from __future__ import annotations

import shutil
from collections.abc import Callable

import pytest

from device_os.core.device import Device, Phase
from device_os.errors import Tampered
from device_os.tpm import Tpm
from tests.device.conftest import PIN, CoreCenter
from tests.support.swtpm import SwtpmInstance

pytestmark = pytest.mark.swtpm
WRONG = "999999"


def _set_up(make_device: Callable[..., Device], swtpm: SwtpmInstance) -> Device:
    device = make_device(swtpm)
    device.provision()
    device.setup(PIN)
    return device


def _other_program_increments(swtpm: SwtpmInstance) -> None:
    """Another program on the board moves the wallet counter (a second TPM connection)."""
    with Tpm.open(swtpm.tcti) as other:
        other.counter_increment()


def test_tampered_without_keys_is_device_tampered_and_spends_no_try(
    swtpm: SwtpmInstance, make_device: Callable[..., Device]
) -> None:
    device = _set_up(make_device, swtpm)
    device.close()
    shutil.rmtree(device.data_dir / "keys")
    d2 = make_device(swtpm)
    assert d2.phase() is Phase.TAMPERED
    tries = d2.tpm.da_status().failed_tries
    for pin in (PIN, WRONG, "1"):
        with pytest.raises(Tampered):  # not FileNotFoundError (500)
            d2.unlock(pin)
    assert d2.tpm.da_status().failed_tries == tries
    assert "Unseal" not in d2.tpm.recent_commands()


def test_tampered_with_keys_says_so_before_the_pin_is_tried(
    swtpm: SwtpmInstance, make_device: Callable[..., Device], real: CoreCenter
) -> None:
    device = _set_up(make_device, swtpm)
    device.unlock(PIN)
    old = device.store.state_path.read_bytes()
    real.enroll(device)  # one commit (the real center's enrollment)
    device.close()
    device.store.state_path.write_bytes(old)  # a rolled-back state
    d2 = make_device(swtpm)
    assert d2.phase() is Phase.TAMPERED
    tries = d2.tpm.da_status().failed_tries
    with pytest.raises(Tampered):
        d2.unlock(WRONG)  # a wrong PIN would have cost a dictionary-attack try
    assert d2.tpm.da_status().failed_tries == tries
    assert "Unseal" not in d2.tpm.recent_commands()


def test_counter_moved_at_commit_is_tamper_in_the_status(
    ready: Device, real: CoreCenter, swtpm: SwtpmInstance
) -> None:
    device = ready
    wallet = device.wallet()
    wallet.apply_credit(real.credit(device.device_id, amount=100))
    state = device.store.state_path.read_bytes()
    _other_program_increments(swtpm)
    with pytest.raises(Tampered, match="moved"):
        wallet.apply_credit(real.credit(device.device_id, amount=50))
    status = device.status()
    assert status.tampered
    assert status.phase is Phase.TAMPERED
    assert "moved" in (status.tamper_reason or "")
    assert device.store.state_path.read_bytes() == state
    with pytest.raises(Tampered):
        device.wallet()


def test_unlock_checks_the_state_counter_against_the_tpm(
    swtpm: SwtpmInstance, make_device: Callable[..., Device]
) -> None:
    """Locked device, consistent at start; the counter moves before the unlock: the unlock sees it."""
    device = _set_up(make_device, swtpm)
    assert device.phase() is Phase.LOCKED
    # Moved through the device's own connection: a second one would flush the adapter's encrypted session
    # (swtpm has no resource manager), which the unlock needs.
    device.tpm.counter_increment()
    with pytest.raises(Tampered, match="counter"):
        device.unlock(PIN)
    assert device.status().tampered
    assert device.phase() is Phase.TAMPERED
