"""A coupon and a ticket issued by the real center (`center credit issue --coupon / --ticket`), redeemed with
terminal_cli and spent in real purchases: the board's debits follow protocol.pricing, the center settles them
exactly (its ledger report's checks pass) and the board's signed statement matches the center's ledger.
Until now only the device's unit tests and the power-cut campaign spent coupons and tickets, with forged
credits (docs/testing.md)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.terminal.conftest import Shop

pytestmark = [pytest.mark.swtpm, pytest.mark.integration]


def _purses(shop: Shop) -> dict[str, Any]:
    purses: dict[str, Any] = shop.cli.json("wallet")["purses"]
    return purses


def _issue(shop: Shop, *kind: str) -> str:
    issued = shop.center.admin("credit", "issue", "--device", shop.device_id, *kind)  # its --json answer
    assert issued["device_id"] == shop.device_id
    code: str = issued["code"]
    return code


def test_a_coupon_and_a_ticket_from_the_center_pay_real_purchases(shop: Shop) -> None:
    cli = shop.cli
    catalog = sorted(cli.json("catalog"), key=lambda i: i["price"]["amount"])
    cheap, dear = catalog[0], catalog[-1]
    price = dear["price"]["amount"]
    assert cheap["item_id"] != dear["item_id"]
    assert price >= 2
    cli.json("redeem", shop.center.credit(shop.device_id, price))
    start = int(_purses(shop)["prepaid"]["JPY"])

    # a coupon worth part of the price: it pays that part, prepaid pays the rest
    off = price // 2
    redeemed = cli.json("redeem", _issue(shop, "--coupon", str(off), "JPY"))
    assert redeemed["kind"] == "coupon"
    (coupon,) = _purses(shop)["coupons"]
    bought = shop.purchase(dear["item_id"])
    debits = {d["purse"]: d for d in bought["debits"]}
    assert debits["coupon"]["amount"] == off
    assert debits["coupon"]["credit_id"] == coupon["credit_id"]
    assert debits["prepaid"]["amount"] == price - off
    after = _purses(shop)
    assert after["coupons"] == []
    assert int(after["prepaid"]["JPY"]) == start - (price - off)

    # a ticket for one item: it pays all of it, prepaid is not touched
    redeemed = cli.json("redeem", _issue(shop, "--ticket", cheap["item_id"]))
    assert redeemed["kind"] == "ticket"
    (ticket,) = _purses(shop)["tickets"]
    assert ticket["item_id"] == cheap["item_id"]
    bought = shop.purchase(cheap["item_id"])
    assert [(d["purse"], d["amount"]) for d in bought["debits"]] == [("ticket", cheap["price"]["amount"])]
    after = _purses(shop)
    assert after["tickets"] == []
    assert int(after["prepaid"]["JPY"]) == start - (price - off)

    # the center settled both exactly as the board paid them
    receipts = {r["item_id"]: r for r in cli.json("receipts")}
    assert receipts[dear["item_id"]]["state"] == receipts[cheap["item_id"]]["state"] == "paid"
    synced = cli.json("sync")
    assert synced["statement"]["matches"] is True, synced["statement"]
    report = shop.center.admin("ledger", "report", "--device", shop.device_id, "--json")
    assert report["checks"]["ok"] is True, report["checks"]
    assert report["unpaid_deliveries"] == []
    (wallet,) = [a for a in report["accounts"] if a["kind"] == "wallet" and a["currency"] == "JPY"]
    assert wallet["available"] == wallet["balance"] == start - (price - off)
    assert [a for a in report["accounts"] if a["kind"] == "coupon" and a["available"] != 0] == []
