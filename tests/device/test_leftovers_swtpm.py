"""Leftovers of issue 12, finding 10, on a real swtpm: an in-process recovery collects the orphan blob of a
purchase cut at the increment, and `Device.close()` sends TPM2_Shutdown(STATE) even when the lock fails."""

from __future__ import annotations

import pytest

from device_os.core.device import Device, Phase
from device_os.errors import Unavailable
from device_os.tpm import TpmError
from tests.device.conftest import PIN, CoreCenter
from tests.support.swtpm import SwtpmInstance

pytestmark = pytest.mark.swtpm


def test_in_process_recovery_deletes_the_orphan_blob(
    ready: Device, real: CoreCenter, swtpm: SwtpmInstance
) -> None:
    device = ready
    wallet = device.wallet()
    wallet.apply_credit(real.credit(device.device_id, amount=1000))
    listing = device.content.listing()
    state = device.store.state_path.read_bytes()
    order_jws, stream = real.order(device.device_id, "film", 100, b"film " * 50_000)
    staged = wallet.stage(wallet.verify_order(order_jws), [stream], "now", order_jws=order_jws)
    if staged.ahead is not None:  # let the payment signed ahead finish before the TPM goes away
        staged.ahead.result_for(staged.ahead.payment)
    swtpm.kill()  # the TPM goes away at the commit
    with pytest.raises(Unavailable):
        wallet.commit_purchase(order_jws, staged)
    assert device.content.listing() != listing  # the blob stays: the commit may have happened
    swtpm.start()
    assert device.start().phase is Phase.LOCKED  # what the service does after an interrupted commit
    device.unlock(PIN)
    assert device.content.listing() == listing  # the orphan is gone without a restart
    assert device.store.state_path.read_bytes() == state
    assert device.wallet().body.purses.prepaid == {"JPY": 1000}


def test_close_shuts_the_tpm_down_even_if_the_lock_fails(
    ready: Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = ready

    def fail() -> None:
        raise TpmError("flushing a hot key failed", rc=0x18B)

    monkeypatch.setattr(device.tpm, "unload_hot_keys", fail)
    with pytest.raises(TpmError):
        device.close()
    assert device.tpm.recent_commands()[-1] == "Shutdown"  # orderly: no DA try at the next TPM start
    assert device.phase() is not Phase.UNLOCKED
