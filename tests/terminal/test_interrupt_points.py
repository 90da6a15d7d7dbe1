"""Ctrl-C at each step of a purchase, then `purchase` again or `sync`: one order, one debit, one settlement.

The interrupt is raised from the progress reporter (where a real Ctrl-C lands while the CLI prints), right
after each step the purchase reports, so every step boundary is covered deterministically; the random kills
of test_interrupted.py cover the points in between.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from terminal_cli.center import CenterClient
from terminal_cli.device import DeviceClient
from terminal_cli.journal import Journal
from terminal_cli.purchase import Purchaser
from tests.terminal.conftest import Shop
from tests.terminal.support import PIN
from tests.terminal.test_interrupted import _journal, _one_settled_order, _prepaid

pytestmark = [pytest.mark.swtpm, pytest.mark.integration]

STEPS = [
    "idempotency key recorded",  # before the center hears of it
    "center: order",  # the order is recorded, nothing streamed
    "device: Ke unwrapped",  # the device committed; the journal has no payment yet
    "center: settling",  # the payment is recorded, not relayed
    "device: receipt stored",  # settled and receipted; the journal entry not yet removed
]


class InterruptAt:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def step(self, text: str) -> None:
        if text.startswith(self.prefix):
            raise KeyboardInterrupt

    def transfer(self, total: int, text: str) -> Callable[[int], None]:
        return lambda n: None

    def restart(self) -> None:
        pass


@pytest.mark.parametrize("step", STEPS)
def test_interrupted_at_each_step(shop: Shop, step: str) -> None:
    item = next(i for i in shop.cli.json("catalog") if i["media_kind"] == "image")
    before = _prepaid(shop)
    token = next((shop.cli.state_dir / "centers").rglob(f"device-{shop.device_id}.token")).read_text()
    with CenterClient(shop.center.url, device_token=token) as center, DeviceClient(shop.board.url) as device:
        device.unlock(PIN)
        purchaser = Purchaser(center, device, Journal(shop.cli.state_dir), InterruptAt(step))
        with pytest.raises(KeyboardInterrupt):
            purchaser.purchase(shop.device_id, item["item_id"], mode="now", repurchase=False)
    assert _journal(shop, item["item_id"]).exists()

    if STEPS.index(step) % 2:
        shop.cli.json("sync")
    else:
        done = shop.purchase(item["item_id"])
        assert done["continued"] is True
    assert not _journal(shop, item["item_id"]).exists()
    assert _prepaid(shop) == before - item["price"]["amount"]
    assert [i["item_id"] for i in shop.cli.json("library")] == [item["item_id"]]
    _one_settled_order(shop, item["item_id"], before - item["price"]["amount"])
