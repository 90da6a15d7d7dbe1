"""The purchase hot path issues exactly three TPM commands, counted at the TCTI: ECDH_ZGen, Sign,
NV_Increment (DESIGN.md "TPM discipline")."""

from __future__ import annotations

import os

import pytest

from tests.device_purchase.shop import Shop

pytestmark = [pytest.mark.swtpm, pytest.mark.integration]


@pytest.mark.parametrize("mode", ["now", "deferred"])
def test_exactly_three_tpm_commands_per_purchase(shop: Shop, mode: str) -> None:
    tpm = shop.live.device.tpm
    for i in range(3):
        order, body = shop.order(f"item{i}", os.urandom(100_000 * (i + 1)))
        n = tpm.commands
        r = shop.post(order, body, mode=mode)
        assert r.status_code == 200, r.text
        assert tpm.commands - n == 3
        assert tpm.recent_commands()[-3:] == ["ECDH_ZGen", "Sign", "NV_Increment"]
        # The same order again: the stored answer, no TPM command.
        n = tpm.commands
        assert shop.post(order, body, mode=mode).status_code == 200
        assert tpm.commands == n
