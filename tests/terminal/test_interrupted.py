"""A purchase killed anywhere finishes on a re-run or `sync` with one order, one debit and one settlement; a
payment relayed twice settles once. Real center, real device service on swtpm, the CLI as a process."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from terminal_cli.center import CenterClient
from terminal_cli.device import DeviceClient
from terminal_cli.journal import Journal
from terminal_cli.purchase import Purchaser, Quiet
from tests.terminal.conftest import Shop
from tests.terminal.support import PIN

pytestmark = [pytest.mark.swtpm, pytest.mark.integration]

BIG = 48 * 1024 * 1024


def _big_item(shop: Shop, tmp_path: Path, price: int = 400) -> tuple[str, str]:
    path = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        for _ in range(BIG // (1 << 20)):
            block = os.urandom(1 << 20)
            digest.update(block)
            fh.write(block)
    trial = tmp_path / "trial.bin"
    trial.write_bytes(b"a trial file")
    item_id = shop.center.add_item([path], "Big archive", price, preview=trial)
    path.unlink()
    return item_id, digest.hexdigest()


def _journal(shop: Shop, item_id: str) -> Path:
    return shop.cli.state_dir / "purchases" / shop.device_id / f"{item_id}.json"


def _prepaid(shop: Shop) -> int:
    return int(shop.cli.json("wallet")["purses"]["prepaid"].get("JPY", 0))


@pytest.mark.slow
@pytest.mark.parametrize("finish", ["rerun", "sync"])
def test_killed_mid_purchase_then_finished_once(shop: Shop, tmp_path: Path, finish: str) -> None:
    item_id, sha = _big_item(shop, tmp_path)
    before = _prepaid(shop)
    rng = random.Random(os.environ.get("COFFER_SEED", "terminal"))
    process = shop.cli.popen("purchase", item_id)
    journal = _journal(shop, item_id)
    deadline = time.monotonic() + 120
    while b'"order":"' not in (journal.read_bytes() if journal.exists() else b""):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 0.3))  # somewhere in the stream (or the commit)
    process.send_signal(signal.SIGKILL)
    process.communicate()

    if finish == "rerun":
        done = shop.purchase(item_id)
        assert done["continued"] is True
    else:
        synced = shop.cli.json("sync")
        assert synced["statement"]["matches"] is True, synced["statement"]
    assert not journal.exists()
    assert _prepaid(shop) == before - 400  # one debit
    (receipt,) = [r for r in shop.cli.json("receipts") if r["item_id"] == item_id]
    assert receipt["state"] == "paid"
    assert receipt["receipt_on_device"] is True
    opened = shop.cli.json("open", item_id, "-o", str(tmp_path / "out.bin"))
    assert opened["sha256"] == sha
    _one_settled_order(shop, item_id, before - 400)


def _one_settled_order(shop: Shop, item_id: str, balance: int) -> None:
    """The center's view: one order for the item, paid; no hold left; the wallet account debited once."""
    with sqlite3.connect(shop.center.data / "center.db") as db:
        rows = db.execute(
            "SELECT paid_at IS NOT NULL FROM orders WHERE device_id = ? AND item_id = ?",
            (shop.device_id, item_id),
        ).fetchall()
    assert rows == [(1,)]
    ledger = shop.center.admin("ledger", "report", "--device", shop.device_id)
    assert ledger["checks"]["ok"] is True, ledger["checks"]
    assert ledger["unpaid_deliveries"] == []
    (wallet,) = [a for a in ledger["accounts"] if a["kind"] == "wallet"]
    assert wallet["held"] == 0
    assert wallet["balance"] == balance


def test_a_payment_relayed_twice_settles_once(shop: Shop) -> None:
    item = shop.cli.json("catalog")[0]
    token_file = next((shop.cli.state_dir / "centers").rglob(f"device-{shop.device_id}.token"))
    with (
        CenterClient(shop.center.url, device_token=token_file.read_text()) as center,
        DeviceClient(shop.board.url) as device,
    ):
        device.unlock(PIN)
        journal = Journal(shop.cli.state_dir)
        purchaser = Purchaser(center, device, journal, Quiet())
        entry = journal.begin(
            device_id=shop.device_id,
            item_id=item["item_id"],
            center=center.base_url,
            mode="now",
            repurchase=False,
        )
        order = center.create_order(item["item_id"], shop.device_id, entry.key)
        again = center.create_order(item["item_id"], shop.device_id, entry.key)  # same key: same order
        assert again.order_id == order.order_id
        assert again.order == order.order
        with center.download(order.content_url, auth=True) as response:
            answer = device.purchase(order.order, response.iter_raw(1 << 20), order.content_length)
        first = center.pay(order.order_id, answer.payment)
        second = center.pay(order.order_id, answer.payment)
        assert first.receipt == second.receipt
        device.receipt(first.receipt)
        journal.finish(entry)
        assert center.order(order.order_id).state == "paid"
        del purchaser
    assert shop.cli.json("sync")["statement"]["matches"] is True
    _one_settled_order(shop, item["item_id"], 1000 - item["price"]["amount"])
