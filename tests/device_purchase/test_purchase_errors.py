"""Every refused purchase is a problem+json answer and leaves no state change (DESIGN.md "Device state": the
same TPM counter, a byte-identical `state`, the same content directory listing)."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Callable

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from protocol import stream
from tests.device_purchase.shop import FUNDS, Shop
from tests.support.center import claims
from tests.support.forger import DAY, Forger

pytestmark = [pytest.mark.swtpm, pytest.mark.integration]

CONTENT = os.urandom(300_000)  # several of the center's 64 KiB segments
SEG = stream.DEFAULT_SEGMENT_SIZE  # the real center's segment size (the forger's orders use it too)


def _refused(shop: Shop, order: str, body: bytes, slug: str, status: int, **kw: object) -> None:
    before = shop.snapshot()
    r = shop.post(order, body, **kw)  # type: ignore[arg-type]
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == f"urn:coffer:problem:{slug}"
    assert shop.snapshot() == before
    assert not [n for n in shop.live.device.content.listing() if n.endswith(".tmp")]


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def _own_order(shop: Shop, **kw: object) -> tuple[str, bytes, bytes]:
    """(order, stream, Ke) for CONTENT with members overridable: what the center never signs, so the forger
    signs it with the center's key."""
    ke = os.urandom(32)
    members: dict[str, object] = {
        "ke": ke,
        "content_sha256": hashlib.sha256(CONTENT).hexdigest(),
        "content_length": len(CONTENT),
        "segment_size": SEG,
        "item_id": shop.item("x", CONTENT),
    }
    members.update(kw)
    order = shop.forger.order(shop.device_id, shop.kem, **members)  # type: ignore[arg-type]
    return order, stream.encrypt(CONTENT, ke, segment_size=SEG), ke


Case = Callable[[Shop], tuple[str, bytes]]


def _insufficient(shop: Shop) -> tuple[str, bytes]:
    """A real order the device cannot pay: the center also counts a credit redeemed but never given to the
    device (so it holds the price), the device has only FUNDS."""
    shop.credit(FUNDS)
    return shop.order("dear", CONTENT, price=FUNDS + 1)


def _expired(shop: Shop) -> tuple[str, bytes]:
    now = shop.forger.now
    return shop.forger.order_for(shop.device_id, shop.kem, CONTENT, iat=now - 2 * DAY, exp=now - DAY)


def _wrong_device(shop: Shop) -> tuple[str, bytes]:
    return shop.forger.order_for("dev_" + "a" * 32, shop.kem, CONTENT)


def _foreign_signer(shop: Shop) -> tuple[str, bytes]:
    return Forger().order_for(shop.device_id, shop.kem, CONTENT)


def _not_a_jws(shop: Shop) -> tuple[str, bytes]:
    _, body = shop.order("x", CONTENT)
    return "eyJhbGciOiJFUzI1NiJ9.e30.AAAA", body


def _tampered(shop: Shop) -> tuple[str, bytes]:
    order, body = shop.order("x", CONTENT)
    return order, _flip(body, len(body) // 2)


def _tampered_last(shop: Shop) -> tuple[str, bytes]:
    order, body = shop.order("x", CONTENT)
    return order, _flip(body, len(body) - 1)


def _truncated(shop: Shop) -> tuple[str, bytes]:
    order, body = shop.order("x", CONTENT)
    return order, body[:-10]


def _truncated_at_boundary(shop: Shop) -> tuple[str, bytes]:
    order, body = shop.order("x", CONTENT)
    assert claims(order)["segment_size"] == SEG
    return order, body[: stream.HEADER_SIZE + 3 * (SEG + stream.TAG_SIZE)]


def _header_only(shop: Shop) -> tuple[str, bytes]:
    order, body = shop.order("x", CONTENT)
    return order, body[: stream.HEADER_SIZE]


def _empty_body(shop: Shop) -> tuple[str, bytes]:
    order, _ = shop.order("x", CONTENT)
    return order, b""


def _hash_mismatch(shop: Shop) -> tuple[str, bytes]:
    order, body, _ = _own_order(shop, content_sha256=hashlib.sha256(b"other").hexdigest())
    return order, body


def _shorter(shop: Shop) -> tuple[str, bytes]:
    order, body, _ = _own_order(shop, content_length=len(CONTENT) + 1)
    return order, body


def _longer_plaintext(shop: Shop) -> tuple[str, bytes]:
    order, body, _ = _own_order(shop, content_length=len(CONTENT) - 1)
    return order, body


def _trailing_bytes(shop: Shop) -> tuple[str, bytes]:
    order, body = shop.order("x", CONTENT)
    return order, body + b"\x00"


def _wrong_key(shop: Shop) -> tuple[str, bytes]:
    order, _, _ = _own_order(shop)
    return order, stream.encrypt(CONTENT, os.urandom(32), segment_size=SEG)


def _order_too_large_segments(shop: Shop) -> tuple[str, bytes]:
    order, _, ke = _own_order(shop, segment_size=2 * 1024 * 1024)
    return order, stream.encrypt(CONTENT, ke, segment_size=2 * 1024 * 1024)


def _stream_too_large_segments(shop: Shop) -> tuple[str, bytes]:
    order, _, ke = _own_order(shop)
    return order, stream.encrypt(CONTENT, ke, segment_size=2 * 1024 * 1024)


def _header_other_aead(shop: Shop) -> tuple[str, bytes]:
    order, _, ke = _own_order(shop)
    return order, stream.encrypt(CONTENT, ke, aead="chacha20-poly1305", segment_size=SEG)


def _wrapped_to_another_key(shop: Shop) -> tuple[str, bytes]:
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    return shop.forger.order_for(shop.device_id, other, CONTENT)


CASES: dict[str, tuple[Case, str, int]] = {
    "insufficient-funds": (_insufficient, "insufficient-funds", 402),
    "expired": (_expired, "message-expired", 422),
    "wrong-device": (_wrong_device, "wrong-device", 422),
    "foreign-signer": (_foreign_signer, "invalid-signature", 422),
    "not-a-jws": (_not_a_jws, "invalid-signature", 422),
    "tampered": (_tampered, "corrupt-content", 422),
    "tampered-last": (_tampered_last, "corrupt-content", 422),
    "truncated": (_truncated, "corrupt-content", 422),
    "truncated-at-boundary": (_truncated_at_boundary, "corrupt-content", 422),
    "header-only": (_header_only, "corrupt-content", 422),
    "empty-body": (_empty_body, "corrupt-content", 422),
    "wrong-key": (_wrong_key, "corrupt-content", 422),
    "hash-mismatch": (_hash_mismatch, "content-mismatch", 422),
    "shorter-than-order": (_shorter, "content-mismatch", 422),
    "longer-than-order": (_longer_plaintext, "content-mismatch", 422),
    "trailing-bytes": (_trailing_bytes, "content-mismatch", 422),
    "order-segment-too-large": (_order_too_large_segments, "segment-too-large", 422),
    "stream-segment-too-large": (_stream_too_large_segments, "segment-too-large", 422),
    "header-other-aead": (_header_other_aead, "corrupt-content", 422),
    "wrapped-to-another-key": (_wrapped_to_another_key, "invalid-signature", 422),
}


@pytest.mark.parametrize("mode", ["now", "deferred"])
def test_refusals_leave_no_state_change(shop: Shop, mode: str) -> None:
    shop.buy("owned", b"owned already")
    for name, (case, slug, status) in CASES.items():
        order, body = case(shop)
        try:
            _refused(shop, order, body, slug, status, mode=mode)
        except AssertionError as exc:
            raise AssertionError(f"case {name}: {exc}") from exc
    order, body = shop.order("owned")  # a second real order for an item the device owns
    _refused(shop, order, body, "already-owned", 409, mode=mode)
    # After all that, a good purchase still works and debits once.
    assert shop.balance() == FUNDS - 100
    shop.buy("fine", CONTENT, mode=mode)
    assert shop.balance() == FUNDS - 200


def test_refusals_before_the_body_do_not_read_it(shop: Shop) -> None:
    """Order checks come first: a huge declared body is refused without the device reading it."""
    order, _ = _insufficient(shop)
    before = shop.snapshot()

    def endless() -> object:
        chunk = b"\0" * 65536
        for _ in range(16 * 1024):  # 1 GiB if anyone read it all
            yield chunk

    r = shop.post(order, endless())  # type: ignore[arg-type]
    assert r.status_code == 402
    assert shop.snapshot() == before


def test_request_shape_errors(shop: Shop) -> None:
    order, body = shop.order("x", CONTENT)
    before = shop.snapshot()
    r = shop.post(order, body, mode="later")
    assert r.status_code == 422
    assert r.json()["type"] == "urn:coffer:problem:validation-error"
    r = shop.live.client.post("/v1/purchases", content=body, headers=shop.headers)  # no Coffer-Order
    assert r.status_code == 422
    r = shop.live.client.post("/v1/purchases", content=body, headers={"Coffer-Order": order})
    assert r.status_code == 401
    assert r.json()["type"] == "urn:coffer:problem:unauthorized"
    assert shop.snapshot() == before


def test_client_disconnect_mid_upload_aborts_staging(shop: Shop) -> None:
    order, body = shop.order("3mb", os.urandom(3_000_000))
    before = shop.snapshot()
    host, port = shop.live.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        head = (
            f"POST /v1/purchases HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {shop.token}\r\n"
            f"Coffer-Order: {order}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        sock.sendall(head + body[: len(body) // 2])
        # Wait until the device is staging (a temp blob exists), then hang up.
        deadline = time.monotonic() + 30
        while not [n for n in shop.live.device.content.listing() if n.endswith(".tmp")]:
            assert time.monotonic() < deadline, "staging never started"
            time.sleep(0.01)
    deadline = time.monotonic() + 30
    while shop.live.device.content.listing() != list(before.content):
        assert time.monotonic() < deadline, shop.live.device.content.listing()
        time.sleep(0.01)
    assert shop.snapshot() == before
    # The device still serves; the same order then succeeds from byte 0.
    r = shop.post(order, body)
    assert r.status_code == 200, r.text
    assert shop.balance() == FUNDS - 100


def test_locked_device_refuses(shop: Shop) -> None:
    order, body = shop.order("x", CONTENT)
    assert shop.live.client.post("/v1/lock", headers=shop.headers).status_code == 204
    r = shop.post(order, body)
    assert r.status_code == 401
    assert isinstance(r, httpx.Response)


def test_declared_body_above_the_route_limit(shop: Shop) -> None:
    order, _ = shop.order("x", CONTENT)
    before = shop.snapshot()
    host, port = shop.live.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            (
                f"POST /v1/purchases HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Authorization: Bearer {shop.token}\r\nCoffer-Order: {order}\r\n"
                f"Content-Length: {65 * 1024**3}\r\n\r\n"
            ).encode()
        )
        reply = b""
        while b"\r\n\r\n" not in reply or len(reply.partition(b"\r\n\r\n")[2]) < _length(reply):
            chunk = sock.recv(65536)
            assert chunk, reply
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413"), reply[:100]
    assert b"urn:coffer:problem:payload-too-large" in reply
    assert shop.snapshot() == before


def _length(reply: bytes) -> int:
    for line in reply.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0
