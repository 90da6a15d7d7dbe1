"""A commit cut by the TPM (DESIGN.md "Device state and crash safety") is recovered without a restart.

The TPM goes away between a credit's `state.next` and its NV_Increment: the credit is refused (503), the
service runs the start-up recovery by headers at the next request, locks, and after a new unlock the same
credit applies exactly once.
"""

from __future__ import annotations

import pytest

from tests.device_api.live import PIN, LiveDevice, auth
from tests.support.center import Account, RealCenter
from tests.support.swtpm import SwtpmInstance

pytestmark = [pytest.mark.swtpm, pytest.mark.integration]


def test_commit_cut_by_the_tpm_recovers_without_restart(
    enrolled: tuple[LiveDevice, str], account: Account, real_center: RealCenter, swtpm: SwtpmInstance
) -> None:
    live, token = enrolled
    credit = account.prepaid(real_center, 1500)
    counter_before = live.client.get("/v1/wallet", headers=auth(token)).json()["counter"]

    swtpm.kill()
    cut = live.client.post("/v1/credits", json={"credit": credit}, headers=auth(token))
    assert cut.status_code == 503, cut.text
    assert cut.json()["type"] == "urn:coffer:problem:service-unavailable"
    assert live.device.needs_recovery
    swtpm.start()

    # The next authenticated request recovers (the interrupted commit never reached the counter: discarded)
    # and locks: the old token is gone.
    after = live.client.get("/v1/wallet", headers=auth(token))
    assert after.status_code == 401, after.text
    assert "unlock again" in after.json()["detail"]
    assert not live.device.needs_recovery
    assert not live.device.tampered
    assert not (live.settings.data_dir / "state.next").exists()

    fresh = live.client.post("/v1/unlock", json={"pin": PIN})
    assert fresh.status_code == 200, fresh.text
    token = fresh.json()["token"]
    wallet = live.client.get("/v1/wallet", headers=auth(token)).json()
    assert wallet["purses"]["prepaid"] == {}
    assert wallet["counter"] == counter_before

    applied = live.client.post("/v1/credits", json={"credit": credit}, headers=auth(token))
    assert applied.status_code == 200, applied.text
    wallet = live.client.get("/v1/wallet", headers=auth(token)).json()
    assert wallet["purses"]["prepaid"] == {"JPY": 1500}
    assert wallet["counter"] == counter_before + 1 == live.device.tpm.counter_read()
    replay = live.client.post("/v1/credits", json={"credit": credit}, headers=auth(token))
    assert replay.status_code == 409
