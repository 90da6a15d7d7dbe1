"""The purchase hot path's TPM commands, counted at the TCTI: ECDH_ZGen, Sign, NV_Increment (DESIGN.md "TPM
discipline"), plus the NV_Read that reads the counter back after the increment (issue 12, finding 5: the
"counter moved" check; docs/device-state.md)."""

from __future__ import annotations

import os

import pytest

from tests.device_purchase.shop import Shop

pytestmark = [pytest.mark.swtpm, pytest.mark.integration]


@pytest.mark.parametrize("mode", ["now", "deferred"])
def test_tpm_commands_per_purchase(shop: Shop, mode: str) -> None:
    tpm = shop.live.device.tpm
    for i in range(3):
        order, body = shop.order(f"item{i}", os.urandom(100_000 * (i + 1)))
        n = tpm.commands
        r = shop.post(order, body, mode=mode)
        assert r.status_code == 200, r.text
        assert tpm.commands - n == 4
        assert tpm.recent_commands()[-4:] == ["ECDH_ZGen", "Sign", "NV_Increment", "NV_Read"]
        # The same order again: the stored answer, no TPM command.
        n = tpm.commands
        assert shop.post(order, body, mode=mode).status_code == 200
        assert tpm.commands == n
