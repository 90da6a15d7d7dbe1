"""An order that expired before it was delivered ends with exit 31, is dropped from the journal, and a re-run
orders afresh: one debit. The center's order TTL is set to its minimum (60 s). The center refuses to deliver
an expired order with its own problem type (410 order-expired), which terminal_cli maps to OrderExpired (the
device would refuse it too: a credit signed after the expiry has raised its time floor past `exp`)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from terminal_cli.center import CenterClient
from terminal_cli.journal import Journal
from tests.terminal.conftest import Shop
from tests.terminal.support import PIN, Board, CenterServer, Cli

pytestmark = [pytest.mark.swtpm, pytest.mark.integration, pytest.mark.slow]

TTL = 60


def test_an_expired_order_is_refused_then_ordered_afresh(swtpm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    center = CenterServer(tmp_path / "center", swtpm.ca_bundle, env={"COFFER_CENTER_ORDER_TTL": str(TTL)})
    center.build().start()
    board = Board(tmp_path / "board", swtpm.tcti)
    board.provision()
    board.start()
    try:
        cli = Cli(
            tmp_path / "pc", env={"COFFER_CENTER": center.url, "COFFER_DEVICE": board.url, "COFFER_PIN": PIN}
        )
        device_id = cli.json("device", "setup")["device_id"]
        cli.json("enroll")
        shop = Shop(center, board, cli, device_id)
        item = cli.json("catalog")[0]

        # A PC that died right after the center answered the order (the journal as purchase leaves it).
        journal = Journal(cli.state_dir)
        entry = journal.begin(
            device_id=device_id, item_id=item["item_id"], center=center.url, mode="now", repurchase=False
        )
        token = next((cli.state_dir / "centers").rglob(f"device-{device_id}.token")).read_text()
        with CenterClient(center.url, device_token=token) as client:
            order = client.create_order(item["item_id"], device_id, entry.key)
        journal.update(entry, order_id=order.order_id, order=order.order, content_url=order.content_url,
                       content_length=order.content_length)  # fmt: skip

        time.sleep(TTL + 2)  # the order's exp passes; a credit signed now raises the device's floor past it
        cli.json("redeem", center.credit(device_id, 100))
        balance = cli.json("wallet")["purses"]["prepaid"]["JPY"]

        expired = cli.fails(31, "purchase", item["item_id"])
        assert "expired" in expired.stderr
        assert journal.get(device_id, item["item_id"]) is None
        assert cli.json("wallet")["purses"]["prepaid"]["JPY"] == balance  # nothing debited

        again = shop.purchase(item["item_id"])
        assert again["order_id"] != order.order_id
        assert cli.json("wallet")["purses"]["prepaid"]["JPY"] == balance - item["price"]["amount"]
    finally:
        board.stop()
        center.stop()
