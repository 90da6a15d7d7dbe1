"""POST /v1/purchases over real HTTP on a real swtpm: both import modes, both AEADs, the stored answer,
receipts and the outbox, the library (DESIGN.md flow 5.3-5.6, "Device API")."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from protocol import jws
from protocol.messages import Payment, message_hash
from tests.device_purchase.shop import FUNDS, Shop
from tests.support.center import claims

pytestmark = [pytest.mark.swtpm, pytest.mark.integration]


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


@pytest.mark.parametrize("aead", ["aes-256-gcm", "chacha20-poly1305"])
@pytest.mark.parametrize("mode", ["now", "deferred"])
def test_purchase_streams_into_the_library(make_shop: Callable[..., Shop], aead: str, mode: str) -> None:
    shop = make_shop(aead=aead)  # the device declares its AEAD at enrollment; the center's order uses it
    content = os.urandom(300_001)
    order, stream = shop.order("song", content, price=700)
    assert claims(order)["aead"] == aead
    before = shop.snapshot()
    r = shop.post(order, chunks(stream, 5000), mode=mode)  # a chunked upload of odd-sized pieces
    assert r.status_code == 200, r.text
    answer = r.json()
    assert set(answer) == {"order_id", "payment", "counter"}
    assert answer["counter"] == before.counter + 1 == shop.snapshot().counter
    token = shop.center.open_payment(answer["order_id"], answer["payment"])
    verified = jws.verify(token, Payment, keys=shop.payer, now=0)
    assert verified.order_hash == message_hash(order)
    assert verified.counter == answer["counter"]
    assert [(d.purse, d.amount) for d in verified.debits] == [("prepaid", 700)]
    assert shop.balance() == FUNDS - 700
    items = shop.get("/v1/library").json()["items"]
    assert [(i["item_id"], i["mode"], i["length"]) for i in items] == [
        (shop.item("song"), mode, len(content))
    ]
    assert items[0]["sha256"] == hashlib.sha256(content).hexdigest()
    outbox = shop.get("/v1/outbox").json()["entries"]
    assert [(e["order_id"], e["counter"], e["payment"]) for e in outbox] == [
        (answer["order_id"], answer["counter"], answer["payment"])
    ]
    # Plaintext never reaches the disk: the stored blob is ciphertext (DEK stream or the center's stream).
    blobs = [p for p in shop.live.device.content.directory.iterdir()]
    assert len(blobs) == 1
    stored = blobs[0].read_bytes()
    assert content[:4096] not in stored
    assert (stored == stream) is (mode == "deferred")
    got = shop.get(shop.content_path("song"))
    assert got.status_code == 200
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.content == content


def test_same_order_again_answers_the_same_and_debits_once(shop: Shop) -> None:
    content = b"a document" * 1000
    order, stream = shop.order("doc", content, price=250)
    first = shop.post(order, stream)
    assert first.status_code == 200, first.text
    after = shop.snapshot()
    # The stored answer comes before any other check and before the body is read: even a garbage body.
    again = shop.post(order, b"not a stream at all")
    assert again.status_code == 200
    assert again.content == first.content
    assert shop.snapshot() == after
    assert shop.balance() == FUNDS - 250
    # ...and even with repurchase=true.
    assert shop.post(order, stream, repurchase=True).json() == first.json()
    assert shop.snapshot() == after


def test_receipt_clears_the_outbox_then_the_order_is_settled(shop: Shop) -> None:
    answer = shop.buy("pic", b"\x89PNG" + os.urandom(5000), price=300)
    order_id = answer["order_id"]
    receipt = shop.settle(answer)  # the real center settles the payment and signs the receipt
    assert jws.unverified_member(receipt, "order_id") == order_id
    r = shop.live.client.post("/v1/receipts", json={"receipt": receipt}, headers=shop.headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"order_id": order_id, "counter": answer["counter"] + 1}
    assert shop.get("/v1/outbox").json() == {"entries": []}
    assert shop.wallet()["outbox"] == []
    # The same receipt again: a no-op (no commit).
    before = shop.snapshot()
    r = shop.live.client.post("/v1/receipts", json={"receipt": receipt}, headers=shop.headers)
    assert r.status_code == 200, r.text
    assert shop.snapshot() == before
    # The settled order posted again: 409 order-settled, before the body is read.
    order_jws = _order_of(shop, order_id)
    r = shop.post(order_jws, b"")
    assert r.status_code == 409
    assert r.json()["type"] == "urn:coffer:problem:order-settled"
    assert shop.snapshot() == before


def _order_of(shop: Shop, order_id: str) -> str:
    """An order JWS carrying `order_id` (the stored-answer lookup reads only the id before anything else): the
    center never signs a second order under a settled id, so the forger does, with the center's key."""
    return shop.forger.order_for(shop.device_id, shop.kem, b"x", item_id=shop.item("pic"), order_id=order_id)[
        0
    ]


def test_receipt_refusals_change_nothing(shop: Shop) -> None:
    answer = shop.buy("a", b"alpha" * 100)
    before = shop.snapshot()
    forger = shop.forger  # receipts the center never signs: an unknown order, another payment, another device
    cases = {
        "not-found": forger.receipt(shop.device_id, "ord-unknown", "x" * 43),
        "invalid-payment": forger.receipt(shop.device_id, answer["order_id"], "y" * 43),
        "wrong-device": forger.receipt("dev_" + "a" * 32, answer["order_id"], "y" * 43),
    }
    for slug, receipt in cases.items():
        r = shop.live.client.post("/v1/receipts", json={"receipt": receipt}, headers=shop.headers)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"] == f"urn:coffer:problem:{slug}", r.text
        assert shop.snapshot() == before
    assert len(shop.get("/v1/outbox").json()["entries"]) == 1


def test_already_owned_and_repurchase(shop: Shop) -> None:
    edition = b"first edition" * 100
    shop.buy("book", edition, price=100)
    first_blob = shop.live.device.content.listing()
    order, stream = shop.order("book")  # a second order for the same item
    before = shop.snapshot()
    r = shop.post(order, stream)
    assert r.status_code == 409
    assert r.json()["type"] == "urn:coffer:problem:already-owned"
    assert shop.snapshot() == before
    r = shop.post(order, stream, repurchase=True)
    assert r.status_code == 200, r.text
    assert shop.get(shop.content_path("book")).content == edition
    assert shop.balance() == FUNDS - 200
    assert len(shop.live.device.content.listing()) == 1  # the old blob is gone...
    assert shop.live.device.content.listing() != first_blob  # ...replaced by the new purchase's


def test_delete_item(shop: Shop) -> None:
    shop.buy("clip", os.urandom(70_000))
    shop.buy("keep", b"kept")
    clip = f"/v1/library/{shop.item('clip')}"
    r = shop.live.client.delete(clip, headers=shop.headers)
    assert r.status_code == 204
    assert [i["item_id"] for i in shop.get("/v1/library").json()["items"]] == [shop.item("keep")]
    assert shop.get(shop.content_path("clip")).status_code == 404
    r = shop.live.client.delete(clip, headers=shop.headers)
    assert r.status_code == 404
    assert r.json()["type"] == "urn:coffer:problem:not-found"
    assert len(shop.live.device.content.listing()) == 1
    # The payment stays in the outbox: deleting content never undoes money.
    assert len(shop.get("/v1/outbox").json()["entries"]) == 2


def test_deferred_first_open_reencrypts_in_one_commit(make_shop: Callable[..., Shop]) -> None:
    shop = make_shop(aead="chacha20-poly1305")
    content = os.urandom(200_000)
    order, stream = shop.order("film", content)
    s = claims(order)["segment_size"]  # the center's segments (the device's are 64 KiB too)
    assert shop.post(order, stream, mode="deferred").status_code == 200
    blob = tuple(shop.live.device.content.listing())
    before = shop.snapshot()
    tpm = shop.live.device.tpm
    n = tpm.commands
    # First open: a range (any read) unwraps Ke again and swaps in a DEK blob in one commit.
    r = shop.get(shop.content_path("film"), Range=f"bytes={s - 2}-{s + 1}")  # across a segment boundary
    assert r.status_code == 206
    assert r.content == content[s - 2 : s + 2]
    assert tpm.commands - n == 3  # the commit reads the counter back (issue 12, finding 5)
    assert tpm.recent_commands()[-3:] == ["ECDH_ZGen", "NV_Increment", "NV_Read"]
    after = shop.snapshot()
    assert after.counter == before.counter + 1
    assert after.content != blob
    assert len(after.content) == 1
    assert shop.get("/v1/library").json()["items"][0]["mode"] == "now"
    # Later opens issue no TPM command and commit nothing.
    n = tpm.commands
    assert shop.get(shop.content_path("film")).content == content
    assert tpm.commands == n
    assert shop.snapshot() == after


def test_empty_item(shop: Shop) -> None:
    # The center refuses to list an empty item (`center item add`: "the content is empty"), yet a device must
    # still handle one: an order for zero bytes with the center's key, from the forger.
    order, body = shop.forger.order_for(shop.device_id, shop.kem, b"", item_id="empty")
    assert shop.post(order, body).status_code == 200
    r = shop.get("/v1/library/empty/content")
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["content-length"] == "0"
    r = shop.get("/v1/library/empty/content", Range="bytes=0-")
    assert r.status_code == 416


def test_concurrent_posts_of_one_order_debit_once(shop: Shop) -> None:
    content = os.urandom(2_000_000)
    order, stream = shop.order("twice", content, price=500)
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: shop.post(order, chunks(stream, 65536)), range(2)))
    assert [r.status_code for r in answers] == [200, 200]
    assert answers[0].json() == answers[1].json()
    assert shop.balance() == FUNDS - 500
    assert len(shop.get("/v1/outbox").json()["entries"]) == 1
    assert len(shop.live.device.content.listing()) == 1
    assert shop.get(shop.content_path("twice")).content == content
