"""The on-the-fly content stream equals `protocol.stream.encrypt` with the order's Ke and salt, for every
range shape, both AEADs and the edge lengths, whatever the size of the chunks it sends (those stay bounded).
And the ledger's invariants."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from center import ledger
from center.__main__ import main
from center.api.routes.orders import _last_after
from center.blobs import LocalBlobStore
from center.db import tx
from center.db.commerce import LedgerTransfer, OrderRow
from center.errors import InsufficientFundsError, OrderExpiredError
from center.sealing import SealedValueError, open_sealed, seal
from center.services.catalog import CatalogService
from center.services.delivery import Delivery
from center.services.orders import OrderService
from center.settings import CenterSettings
from protocol import stream
from tests.center.commerce import Center, problem
from tests.center.conftest import add

SEGMENT = 1024
KEY = bytes(range(32))


def _order(sha: str, length: int, aead: str, data_key: bytes, salt: bytes) -> OrderRow:
    return OrderRow(
        order_id="ord_test",
        blob_sha256=sha,
        content_length=length,
        aead=aead,
        segment_size=SEGMENT,
        sealed_secret=seal(data_key, KEY + salt, b"ord_test"),
    )


@pytest.mark.parametrize("aead", ["aes-256-gcm", "chacha20-poly1305"])
@pytest.mark.parametrize("length", [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT, 5 * SEGMENT + 17])
def test_every_range_equals_the_reference_stream(tmp_path: Path, aead: str, length: int) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    plaintext = os.urandom(length)
    stored = blobs.put_bytes(plaintext)
    data_key, salt = os.urandom(32), os.urandom(32)
    delivery = Delivery.of(_order(stored.sha256, length, aead, data_key, salt), data_key)
    reference = stream.encrypt(plaintext, KEY, aead=aead, segment_size=SEGMENT, salt=salt)
    assert delivery.length == len(reference)
    total = len(reference)
    points = sorted(
        {0, 1, 41, 42, 43, SEGMENT + 57, SEGMENT + 58, SEGMENT + 59, total // 2, total - 1, total}
    )
    for start in points:
        for end in points:
            if start < end <= total:
                for out_chunk in (1, 2 * SEGMENT + 5, 1 << 20):  # a segment each, a few, all in one
                    chunks = list(delivery.chunks(blobs, start, end, out_chunk))
                    assert b"".join(chunks) == reference[start:end], (start, end, out_chunk)
                    bound = out_chunk + SEGMENT + stream.TAG_SIZE  # less than out_chunk + one segment
                    assert max(len(c) for c in chunks) < bound


def test_the_sealed_secret_is_bound_to_its_order() -> None:
    data_key = os.urandom(32)
    sealed = seal(data_key, KEY, b"ord_a")
    assert open_sealed(data_key, sealed, b"ord_a") == KEY
    with pytest.raises(SealedValueError):
        open_sealed(data_key, sealed, b"ord_b")
    with pytest.raises(SealedValueError):
        open_sealed(os.urandom(32), sealed, b"ord_a")


def test_ledger_invariants(
    settings: CenterSettings, catalog: CatalogService, capsys: pytest.CaptureFixture[str]
) -> None:
    center = Center(settings)
    device = center.device()
    center.fund(device, 100)
    wallet = ledger.wallet(device.device_id, "JPY")
    sessions = center.commerce.sessions

    # an overdraft rolls the whole transaction back
    def overdraw() -> None:
        with tx.write(sessions) as session:
            book = ledger.Ledger(session, 1)
            book.post(
                "hold:x", "hold", [ledger.Leg("x/0", wallet, ledger.revenue("JPY"), 101, "JPY")], pending=True
            )
            book.require_covered([wallet])

    with pytest.raises(InsufficientFundsError):
        overdraw()
    assert center.ledger_state() == (1, 1)
    # a hold is resolved once; the same transaction id again writes nothing
    with tx.write(sessions) as session:
        book = ledger.Ledger(session, 1)
        assert book.post(
            "hold:y", "hold", [ledger.Leg("y/0", wallet, ledger.revenue("JPY"), 60, "JPY")], pending=True
        )
        assert not book.post(
            "hold:y", "hold", [ledger.Leg("y/1", wallet, ledger.revenue("JPY"), 60, "JPY")], pending=True
        )
        book.require_covered([wallet])
        assert book.available(wallet) == 40
    with tx.write(sessions) as session:
        assert ledger.Ledger(session, 2).resolve("settle:y", "settle", ["y/0"], post=True)
    with pytest.raises(IntegrityError), tx.write(sessions) as session:
        ledger.Ledger(session, 3).resolve("release:y", "release", ["y/0"], post=False)
    assert center.report()["checks"]["ok"]
    assert center.balance(wallet) == 40
    # a tampered row: the report says so and the CLI exits 3
    with tx.write(sessions) as session:
        session.get(LedgerTransfer, "settle:y/post/y/0").amount = 59  # type: ignore[union-attr]
    report = center.report()
    assert not report["checks"]["ok"]
    assert not report["checks"]["resolutions_match_holds"]
    assert main(["ledger", "report", "--data", str(settings.data_dir)]) == 3
    capsys.readouterr()


def test_a_first_delivery_that_expires_before_its_record_is_refused(
    settings: CenterSettings, catalog: CatalogService, tmp_path: Path
) -> None:
    """The content route checks an order read-only and records its first delivery while the stream starts.
    An order that expires between the two: the record refuses it (OrderExpiredError), it stays undelivered
    (its hold can be released), and from then on it is refused before any byte."""
    now = [1_900_000_000]
    center = Center(settings)
    object.__setattr__(center.commerce, "clock", lambda: now[0])
    blob = tmp_path / "content.txt"
    blob.write_text("a text item, previewable\n" * 200)
    item = add(catalog, blob, title="Data", price=100)
    device = center.device()
    center.fund(device, 1000)
    order_id = center.order(device, item).json()["order_id"]
    orders = OrderService(center.commerce)
    row, first = orders.delivery_check(order_id, device.device_id)
    assert first
    assert row.delivered_at is None
    now[0] = row.exp  # expired now, before the record
    with pytest.raises(OrderExpiredError):
        orders.record_delivery(order_id, device.device_id)
    status = center.client.get(f"/v1/orders/{order_id}", headers=device.headers).json()
    assert status["delivered"] is False
    problem(center.content(device, order_id), "order-expired", 410)


def test_the_last_chunk_waits_for_the_record_and_is_never_sent_after_a_refusal() -> None:
    """The first chunks go out while the first delivery's record commits; the last only once it is done."""

    async def stream(refuse: bool) -> tuple[list[bytes], list[bool]]:
        release = asyncio.Event()

        async def record() -> None:
            await release.wait()
            if refuse:
                raise OrderExpiredError("the order expired before its first delivery; order again")

        recorded = asyncio.ensure_future(record())
        sent: list[bytes] = []
        done: list[bool] = []  # was the record done when each chunk came out?
        try:
            async for chunk in _last_after(iter([b"header", b"one", b"last"]), 13, recorded):
                done.append(recorded.done())
                sent.append(chunk)
                release.set()
        except OrderExpiredError:
            pass
        return sent, done

    sent, done = asyncio.run(stream(refuse=False))
    assert sent == [b"header", b"one", b"last"]
    assert (done[0], done[-1]) == (False, True)
    sent, done = asyncio.run(stream(refuse=True))
    assert sent == [b"header", b"one"]
    assert done[0] is False
