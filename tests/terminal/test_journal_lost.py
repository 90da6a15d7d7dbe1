"""The purchase journal keeps only its first line (the idempotency key) durable; the later steps are appended
without an fsync (terminal_cli/journal.py). So a power cut on the PC may leave the journal at any earlier step
than the one reached, or with a torn last line. These tests put the journal back to each such state after the
purchase went further, then `purchase` again or `sync`: one order, one debit, one settlement, the receipt on
the device, the journal entry gone.
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


class Snapshots:
    """A reporter that copies the journal file at each step; with `stop_at`, Ctrl-C at that step."""

    def __init__(self, path_of: Callable[[], bytes], stop_at: str | None = None) -> None:
        self.read, self.stop_at = path_of, stop_at
        self.taken: list[bytes] = []

    def step(self, text: str) -> None:
        self.taken.append(self.read())
        if self.stop_at is not None and text.startswith(self.stop_at):
            raise KeyboardInterrupt

    def transfer(self, total: int, text: str) -> Callable[[int], None]:
        return lambda n: None

    def restart(self) -> None:
        pass


def _purchaser(shop: Shop, reporter: Snapshots) -> tuple[CenterClient, DeviceClient, Purchaser]:
    token = next((shop.cli.state_dir / "centers").rglob(f"device-{shop.device_id}.token")).read_text()
    center, device = CenterClient(shop.center.url, device_token=token), DeviceClient(shop.board.url)
    device.unlock(PIN)
    return center, device, Purchaser(center, device, Journal(shop.cli.state_dir), reporter)


def test_a_finished_purchase_whose_journal_lost_its_later_steps(shop: Shop) -> None:
    item = next(i for i in shop.cli.json("catalog") if i["media_kind"] == "image")
    item_id, price = item["item_id"], item["price"]["amount"]
    before = _prepaid(shop)
    journal = _journal(shop, item_id)
    snapshots = Snapshots(lambda: journal.read_bytes() if journal.exists() else b"")
    center, device, purchaser = _purchaser(shop, snapshots)
    with center, device:
        purchaser.purchase(shop.device_id, item_id, mode="now", repurchase=False)
    assert not journal.exists()
    lines = [s for s in snapshots.taken if s]
    steps = sorted({s.count(b"\n") for s in lines})
    assert steps == [1, 2, 3]  # begun, ordered, paid (the receipt was delivered after the last one)
    paid = next(s for s in lines if s.count(b"\n") == 3)
    states = {
        "begun": paid.split(b"\n")[0] + b"\n",
        "ordered": b"".join(paid.splitlines(keepends=True)[:2]),
        "paid": paid,
        "torn": paid[: -len(paid.split(b"\n")[-2]) // 2 - 1],  # the paid line cut in half
        "zeros": b"".join(paid.splitlines(keepends=True)[:2]) + b"\0" * 512,
    }
    for name, content in states.items():
        journal.write_bytes(content)
        done = shop.purchase(item_id)
        assert done["continued"] is True, name
        assert done["streamed_bytes"] == 0, (
            name
        )  # found settled at the center or in the outbox: no re-download
        assert not journal.exists(), name
        assert _prepaid(shop) == before - price, name
        (receipt,) = [r for r in shop.cli.json("receipts") if r["item_id"] == item_id]
        assert receipt["receipt_on_device"] is True, name
        _one_settled_order(shop, item_id, before - price)


@pytest.mark.parametrize("kept", [1, 2])
def test_a_committed_payment_whose_journal_lost_it(shop: Shop, kept: int) -> None:
    """The device committed (the payment is in its outbox), then the PC lost the journal's later lines."""
    item = next(i for i in shop.cli.json("catalog") if i["media_kind"] == "image")
    item_id, price = item["item_id"], item["price"]["amount"]
    before = _prepaid(shop)
    journal = _journal(shop, item_id)
    reporter = Snapshots(lambda: b"", stop_at="center: settling")
    center, device, purchaser = _purchaser(shop, reporter)
    with center, device, pytest.raises(KeyboardInterrupt):
        purchaser.purchase(shop.device_id, item_id, mode="now", repurchase=False)
    content = journal.read_bytes()
    assert content.count(b"\n") == 3  # begun, ordered, paid
    journal.write_bytes(b"".join(content.splitlines(keepends=True)[:kept]))
    synced = shop.cli.json("sync")
    assert synced["statement"]["matches"] is True, synced["statement"]
    assert not journal.exists()
    assert _prepaid(shop) == before - price
    assert [i["item_id"] for i in shop.cli.json("library")] == [item_id]
    _one_settled_order(shop, item_id, before - price)
