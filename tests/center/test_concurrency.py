"""Exactly-once under concurrency, with real server processes: 50 identical payments spread over two `center
serve` processes on one PostgreSQL settle as one ledger transaction; concurrent orders never drive a wallet's
balance minus holds below zero (PostgreSQL with two processes, and SQLite WAL with one)."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from center import ledger
from center.db import tx
from center.db.commerce import LedgerTransfer, LedgerTxn
from center.settings import CenterSettings
from tests.center.commerce import Center, SoftDevice, fresh_database
from tests.center.conftest import Media, Postgres, add, catalog_for, live_center

pytestmark = pytest.mark.integration
PRICE = 300


def setup_center(data: Path, media: Media, database_url: str | None) -> tuple[Center, str]:
    settings = CenterSettings(data_dir=data, database_url=database_url)
    item = add(catalog_for(settings), media.text, title="Text", price=PRICE)
    return Center(settings), item


def order_request(device: SoftDevice, item: str, key: str) -> dict[str, Any]:
    return {
        "json": {"item_id": item, "device_id": device.device_id},
        "headers": {**device.headers, "Idempotency-Key": key},
    }


def test_fifty_identical_payments_on_two_processes(postgres: Postgres, tmp_path: Path, media: Media) -> None:
    url = fresh_database(postgres)
    center, item = setup_center(tmp_path / "c", media, url)
    device = center.device()
    center.fund(device, 5 * PRICE)
    answer = center.order(device, item).json()
    sealed = device.payment(center.commerce, answer["order"])
    with (
        live_center(tmp_path / "c", "--database-url", url) as one,
        live_center(tmp_path / "c", "--database-url", url) as two,
        httpx.Client(base_url=one.url, timeout=60) as a,
        httpx.Client(base_url=two.url, timeout=60) as b,
    ):

        def pay(n: int) -> tuple[int, str]:
            client = a if n % 2 else b
            r = client.post(
                f"/v1/orders/{answer['order_id']}/payment", json={"payment": sealed}, headers=device.headers
            )
            return r.status_code, r.text

        with ThreadPoolExecutor(50) as pool:
            results = list(pool.map(pay, range(50)))
    assert Counter(status for status, _ in results) == {200: 50}, results[:3]
    assert len({body for _, body in results}) == 1  # one receipt
    with tx.read(center.commerce.sessions) as session:
        settles = session.scalar(
            select(func.count())
            .select_from(LedgerTxn)
            .where(LedgerTxn.order_id == answer["order_id"], LedgerTxn.kind == "settle")
        )
        posted = session.scalar(
            select(func.count())
            .select_from(LedgerTransfer)
            .where(LedgerTransfer.txn_id == f"settle:{answer['order_id']}")
        )
    assert settles == 1
    assert posted == 1  # the one held leg, posted
    assert center.balance(ledger.wallet(device.device_id, "JPY")) == 4 * PRICE
    assert center.balance(ledger.revenue("JPY")) == PRICE
    assert center.report()["checks"]["ok"]


def _race_orders(urls: list[str], device: SoftDevice, item: str, count: int) -> Counter[int]:
    clients = [httpx.Client(base_url=u, timeout=60) for u in urls]
    try:

        def order(n: int) -> int:
            r = clients[n % len(clients)].post("/v1/orders", **order_request(device, item, f"race-{n:04d}"))
            return r.status_code

        with ThreadPoolExecutor(count) as pool:
            return Counter(pool.map(order, range(count)))
    finally:
        for c in clients:
            c.close()


def test_concurrent_orders_never_overdraw_on_postgres(
    postgres: Postgres, tmp_path: Path, media: Media
) -> None:
    url = fresh_database(postgres)
    center, item = setup_center(tmp_path / "c", media, url)
    device = center.device()
    center.fund(device, 10 * PRICE)
    with (
        live_center(tmp_path / "c", "--database-url", url) as one,
        live_center(tmp_path / "c", "--database-url", url) as two,
    ):
        statuses = _race_orders([one.url, two.url], device, item, 30)
    assert statuses == {201: 10, 402: 20}, statuses
    assert center.balance(ledger.wallet(device.device_id, "JPY")) == 0
    assert center.report()["checks"]["ok"]


def test_concurrent_orders_never_overdraw_on_sqlite(tmp_path: Path, media: Media) -> None:
    center, item = setup_center(tmp_path / "c", media, None)
    device = center.device()
    center.fund(device, 10 * PRICE)
    with live_center(tmp_path / "c") as server:
        statuses = _race_orders([server.url], device, item, 30)
    assert statuses == {201: 10, 402: 20}, statuses
    assert center.balance(ledger.wallet(device.device_id, "JPY")) == 0
    assert center.report()["checks"]["ok"]
