"""Orders, delivery, settlement and credits on a real SQLite database through the HTTP API (in process).

Every refusal is checked to leave the ledger as it was (same transactions, same transfers)."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from center import ledger
from center.db import tx
from center.db.commerce import Device
from center.sealing import token_hash
from center.services.catalog import CatalogService
from center.services.orders import new_order_id
from center.settings import CenterSettings
from protocol import stream
from protocol.pricing import Coupon, Debit, Purses, Ticket
from tests.center.commerce import Center, decrypt, fresh_database, problem, verify_receipt
from tests.center.conftest import add, catalog_for

PRICE = 500


@pytest.fixture
def blob(tmp_path: Path) -> Path:
    path = tmp_path / "content.txt"
    text = base64.b64encode(os.urandom(150_000)).decode()
    path.write_text(
        "\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    )  # 4 segments, the last short
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def database(request: pytest.FixtureRequest, make_settings: Any) -> CenterSettings:
    """The same tests on SQLite (WAL) and on a fresh database of the session's real PostgreSQL."""
    if request.param == "sqlite":
        settings: CenterSettings = make_settings()
    else:
        settings = make_settings(database_url=fresh_database(request.getfixturevalue("postgres")))
    return settings


@pytest.fixture
def catalog(database: CenterSettings) -> CatalogService:
    return catalog_for(database)


@pytest.fixture
def settings(database: CenterSettings) -> CenterSettings:
    return database


@pytest.fixture
def center(database: CenterSettings, catalog: CatalogService) -> Center:
    return Center(database)


@pytest.fixture
def item(catalog: CatalogService, blob: Path) -> str:
    return add(catalog, blob, title="Data", price=PRICE)


def test_purchase_flow_and_a_balanced_ledger(center: Center, item: str, blob: Path) -> None:
    device = center.device()
    center.fund(device, 1200)
    r = center.order(device, item)
    assert r.status_code == 201, r.text
    answer = r.json()
    order, ke = device.open_order(center.commerce, answer["order"])
    assert order.price.amount == PRICE
    assert order.aead == "aes-256-gcm"
    assert order.segment_size == 65536
    assert center.balance(ledger.wallet(device.device_id, "JPY")) == 1200 - PRICE  # held
    status = center.client.get(f"/v1/orders/{order.order_id}", headers=device.headers).json()
    assert status["state"] == "held"
    assert status["delivered"] is False

    body = center.content(device, order.order_id)
    assert body.status_code == 200
    assert (
        len(body.content)
        == answer["content_length"]
        == stream.ciphertext_length(len(blob.read_bytes()), 65536)
    )
    plaintext = decrypt(body.content, ke)
    assert plaintext == blob.read_bytes()
    assert hashlib.sha256(plaintext).hexdigest() == order.content_sha256

    sealed = device.payment(center.commerce, answer["order"])
    paid = center.pay(device, order.order_id, sealed)
    assert paid.status_code == 200, paid.text
    receipt = verify_receipt(center.commerce, paid.json()["receipt"], device.device_id)
    assert receipt.order_id == order.order_id
    again = center.pay(device, order.order_id, sealed)  # the outbox re-sends the same sealed payment
    assert again.status_code == 200
    assert again.json() == paid.json()
    report = center.report()
    assert report["checks"]["ok"]
    assert report["checks"]["balanced"]
    assert center.balance(ledger.wallet(device.device_id, "JPY")) == 1200 - PRICE
    assert center.balance(ledger.revenue("JPY")) == PRICE
    status = center.client.get(f"/v1/orders/{order.order_id}", headers=device.headers).json()
    assert status["state"] == "paid"
    assert status["receipt"] == paid.json()["receipt"]


def test_idempotency_key(center: Center, item: str, catalog: CatalogService, blob: Path) -> None:
    device = center.device()
    center.fund(device, 2000)
    first = center.order(device, item, key="key-00000001")
    assert first.status_code == 201
    again = center.order(device, item, key="key-00000001")
    assert again.status_code == 200
    assert again.json() == first.json()
    before = center.ledger_state()
    other = add(catalog, blob, title="Other", price=10)
    problem(center.order(device, other, key="key-00000001"), "idempotency-mismatch", 422)
    assert center.ledger_state() == before
    missing = center.client.request(
        "POST", "/v1/orders", json={"item_id": item, "device_id": device.device_id}, headers=device.headers
    )
    problem(missing, "validation-error", 422)
    assert center.balance(ledger.wallet(device.device_id, "JPY")) == 2000 - PRICE


def test_refusals_change_nothing(center: Center, item: str) -> None:
    device = center.device()
    center.fund(device, PRICE - 1)
    before = center.ledger_state()
    problem(center.order(device, item), "insufficient-funds", 402)
    stranger = center.device()
    r = center.client.request(
        "POST",
        "/v1/orders",
        json={"item_id": item, "device_id": device.device_id},
        headers={**stranger.headers, "Idempotency-Key": "k" * 16},
    )
    problem(r, "wrong-device", 422)
    problem(center.order(device, "itm_" + "a" * 16), "not-found", 404)
    r = center.client.request(
        "POST",
        "/v1/orders",
        json={"item_id": item, "device_id": device.device_id},
        headers={"Idempotency-Key": "k" * 16},
    )
    problem(r, "unauthorized", 401)
    assert r.headers["www-authenticate"] == "Bearer"
    assert center.ledger_state() == before


def test_range_is_byte_identical_and_maps_to_whole_segments(center: Center, item: str, blob: Path) -> None:
    device = center.device()
    center.fund(device, PRICE)
    answer = center.order(device, item).json()
    order, ke = device.open_order(center.commerce, answer["order"])
    whole = center.content(device, order.order_id).content
    assert center.content(device, order.order_id).content == whole  # same bytes on every request
    length = len(whole)
    block = 65536 + 16
    for first, last in (
        (0, 0),
        (0, 41),
        (42, 42 + block - 1),
        (100, 70_000),
        (42 + block, length - 1),
        (length - 5, length - 1),
    ):
        r = center.content(device, order.order_id, f"bytes={first}-{last}")
        assert r.status_code == 206, r.text
        assert r.headers["content-range"] == f"bytes {first}-{last}/{length}"
        assert r.content == whole[first : last + 1]
    r = center.content(device, order.order_id, "bytes=-100")
    assert r.content == whole[-100:]
    r = center.content(device, order.order_id, "bytes=70000-")
    assert r.content == whole[70000:]
    problem(center.content(device, order.order_id, f"bytes={length}-"), "range-not-satisfiable", 416)
    # a resumed download (stopped mid-segment) decrypts to the item
    cut = 42 + block + 1000
    resumed = whole[:cut] + center.content(device, order.order_id, f"bytes={cut}-").content
    assert decrypt(resumed, ke) == blob.read_bytes()


def test_payment_refusals_leave_the_ledger(center: Center, item: str) -> None:
    device = center.device()
    center.fund(device, 3 * PRICE)
    first = center.order(device, item).json()
    second = center.order(device, item).json()
    before = center.ledger_state()
    c = center.commerce
    problem(center.pay(device, first["order_id"], "AAAA"), "invalid-payment", 422)
    problem(center.pay(device, first["order_id"], device.payment(c, second["order"])), "invalid-payment", 422)
    problem(
        center.pay(device, first["order_id"], device.payment(c, second["order"], order_id=first["order_id"])),
        "invalid-payment",
        422,
    )
    forged = device.payment(c, first["order"], signer=center.device().payer)
    problem(center.pay(device, first["order_id"], forged), "invalid-signature", 422)
    short = (Debit(purse="prepaid", amount=PRICE - 1),)
    problem(
        center.pay(device, first["order_id"], device.payment(c, first["order"], debits=short)),
        "invalid-payment",
        422,
    )
    assert center.ledger_state() == before
    from center.services.credits import CreditService, NewCredit

    code, _ = CreditService(c).issue(NewCredit(device.device_id, "coupon", PRICE, "JPY", expires_days=1))
    r = center.client.request(
        "POST",
        "/v1/credits/redeem",
        json={"code": code, "device_id": device.device_id},
        headers=device.headers,
    )
    late = (Debit(purse="coupon", credit_id=r.json()["credit_id"], amount=PRICE),)
    sealed = device.payment(c, first["order"], debits=late, iat=r.json()["exp"])  # the coupon expired at iat
    problem(center.pay(device, first["order_id"], sealed), "invalid-payment", 422)
    before = center.ledger_state()
    bogus = (Debit(purse="coupon", credit_id="cr_nothing", amount=PRICE),)
    problem(
        center.pay(device, first["order_id"], device.payment(c, first["order"], debits=bogus)),
        "invalid-payment",
        422,
    )
    other = center.device()
    problem(center.pay(other, first["order_id"], device.payment(c, first["order"])), "not-found", 404)
    assert center.ledger_state() == before
    ok = center.pay(device, first["order_id"], device.payment(c, first["order"]))
    assert ok.status_code == 200
    after = center.ledger_state()
    problem(center.pay(device, first["order_id"], device.payment(c, first["order"])), "order-settled", 409)
    assert center.ledger_state() == after
    assert center.report()["checks"]["ok"]


def test_a_reused_counter_marks_the_device_suspect(center: Center, item: str) -> None:
    device = center.device()
    center.fund(device, 3 * PRICE)
    first = center.order(device, item).json()
    second = center.order(device, item).json()
    c = center.commerce
    assert (
        center.pay(device, first["order_id"], device.payment(c, first["order"], counter=50)).status_code
        == 200
    )
    r = center.pay(device, second["order_id"], device.payment(c, second["order"], counter=50))
    assert r.status_code == 200  # it paid, so it settles: the hold covered it
    problem(center.order(device, item), "device-suspect", 403)
    report = center.report()
    assert report["devices"][0]["state"] == "suspect"
    assert report["checks"]["ok"]


def test_coupons_tickets_and_credits(center: Center, item: str, catalog: CatalogService, blob: Path) -> None:
    device = center.device()
    c = center.commerce
    center.fund(device, 300, kind="coupon")
    center.fund(device, 400)
    r = center.order(device, item)
    assert r.status_code == 201, r.text
    answer = r.json()
    coupon_id = next(
        a["account"].split(":", 1)[1] for a in center.report()["accounts"] if a["kind"] == "coupon"
    )
    purses = Purses(
        prepaid={"JPY": 400},
        coupons=(Coupon(credit_id=coupon_id, amount={"amount": 300, "currency": "JPY"}, exp=2**33),),
    )
    paid = center.pay(device, answer["order_id"], device.payment(c, answer["order"], purses))
    assert paid.status_code == 200, paid.text
    assert center.balance(ledger.wallet(device.device_id, "JPY")) == 200
    assert center.balance(ledger.coupon(coupon_id)) == 0
    # a ticket pays a whole item; promotions pay revenue
    from center.services.credits import CreditService, NewCredit

    code, _ = CreditService(c).issue(NewCredit(device.device_id, "ticket", item_id=item))
    redeem = {"code": code, "device_id": device.device_id}
    first = center.client.request("POST", "/v1/credits/redeem", json=redeem, headers=device.headers)
    assert first.status_code == 200
    again = center.client.request("POST", "/v1/credits/redeem", json=redeem, headers=device.headers)
    assert again.json() == first.json()
    other = center.device()
    problem(
        center.client.request(
            "POST", "/v1/credits/redeem", json={**redeem, "device_id": other.device_id}, headers=other.headers
        ),
        "wrong-device",
        422,
    )
    problem(
        center.client.request(
            "POST", "/v1/credits/redeem", json={**redeem, "code": "cc_" + "x" * 30}, headers=device.headers
        ),
        "not-found",
        404,
    )
    answer = center.order(device, item).json()
    ticket = Ticket(credit_id=first.json()["credit_id"], item_id=item, exp=2**33)
    paid = center.pay(
        device, answer["order_id"], device.payment(c, answer["order"], Purses(tickets=(ticket,)))
    )
    assert paid.status_code == 200, paid.text
    assert center.balance(ledger.revenue("JPY")) == 2 * PRICE
    assert center.report()["checks"]["ok"]


def test_revoked_device(center: Center, item: str) -> None:
    device = center.device()
    center.fund(device, 2 * PRICE)
    answer = center.order(device, item).json()
    center.app.state.center.admin.revoke(device.device_id)
    problem(center.order(device, item), "device-revoked", 403)
    from center.errors import DeviceRevokedError
    from center.services.credits import CreditService, NewCredit

    with pytest.raises(DeviceRevokedError):
        CreditService(center.commerce).issue(NewCredit(device.device_id, "prepaid", 10, "JPY"))
    # payments for orders already made still settle
    assert (
        center.pay(device, answer["order_id"], device.payment(center.commerce, answer["order"])).status_code
        == 200
    )


def test_unpaid_limit_and_expired_holds(center: Center, item: str, settings: CenterSettings) -> None:
    now = [1_900_000_000]
    object.__setattr__(center.commerce, "clock", lambda: now[0])
    device = center.device()
    center.fund(device, 10 * PRICE)
    delivered = []
    for _ in range(3):
        answer = center.order(device, item).json()
        assert center.content(device, answer["order_id"]).status_code == 200
        delivered.append(answer)
    undelivered = center.order(device, item).json()
    assert center.balance(ledger.wallet(device.device_id, "JPY")) == 6 * PRICE
    now[0] += settings.order_ttl + 1
    problem(center.content(device, undelivered["order_id"]), "order-expired", 410)
    problem(center.order(device, item), "unpaid-limit", 403)
    status = center.client.get(f"/v1/orders/{delivered[0]['order_id']}", headers=device.headers).json()
    assert status["state"] == "unpaid-delivery"
    assert center.balance(ledger.wallet(device.device_id, "JPY")) == 6 * PRICE  # the refusal changed nothing
    late = center.pay(
        device, delivered[0]["order_id"], device.payment(center.commerce, delivered[0]["order"])
    )
    assert late.status_code == 200  # settles after exp
    assert center.order(device, item).status_code == 201
    # that order gave the undelivered order's hold back (voided); the delivered ones stay held until paid
    assert center.balance(ledger.wallet(device.device_id, "JPY")) == 6 * PRICE
    status = center.client.get(f"/v1/orders/{undelivered['order_id']}", headers=device.headers).json()
    assert status["state"] == "expired"
    assert center.report()["checks"]["ok"]


def test_an_order_expired_before_its_first_delivery_is_gone(
    center: Center, item: str, settings: CenterSettings
) -> None:
    """410 order-expired (its own problem type: a client can tell it from any other conflict), no stream and
    nothing changed; an order delivered once before its exp still streams after it (resumes)."""
    now = [1_900_000_000]
    object.__setattr__(center.commerce, "clock", lambda: now[0])
    device = center.device()
    center.fund(device, 10 * PRICE)
    late = center.order(device, item).json()
    early = center.order(device, item).json()
    assert center.content(device, early["order_id"], "bytes=0-99").status_code == 206
    now[0] += settings.order_ttl
    before = center.ledger_state()
    r = center.content(device, late["order_id"])
    problem(r, "order-expired", 410)
    assert "order again" in r.json()["detail"]
    assert center.ledger_state() == before
    status = center.client.get(f"/v1/orders/{late['order_id']}", headers=device.headers).json()
    assert (status["state"], status["delivered"]) == ("expired", False)
    assert center.content(device, early["order_id"], "bytes=100-199").status_code == 206


def test_a_replaced_token_stops_at_once_in_a_process_that_remembered_it(
    center: Center, settings: CenterSettings, item: str
) -> None:
    """The order and payment routes remember token → device per process (TokenHints); another process
    replacing the token (re-enrollment) or clearing it (`center device reset`) must stop it at once: the
    service compares the token with the locked device row."""
    device = center.device()
    center.fund(device, 10 * PRICE)
    r = center.order(device, item)  # this process now remembers the token
    assert r.status_code == 201, r.text
    order_id, sealed = r.json()["order_id"], device.payment(center.commerce, r.json()["order"])
    other = Center(settings)  # another server process on the same database

    def set_token_hash(value: str | None) -> None:
        with tx.write(other.commerce.sessions) as session:
            row = session.get(Device, device.device_id)
            assert row is not None
            row.token_hash = value

    set_token_hash(token_hash("a-fresh-token-of-a-re-enrollment"))
    before = center.ledger_state()
    problem(center.pay(device, order_id, sealed), "unauthorized", 401)  # from the remembered token
    problem(center.order(device, item), "unauthorized", 401)  # forgotten: looked up, unknown
    set_token_hash(token_hash(device.token))
    assert center.order(device, item, key="remembered-again").status_code == 201
    other.app.state.center.admin.reset(device.device_id)  # clears the token
    before = center.ledger_state()
    r = center.order(device, item)
    problem(r, "unauthorized", 401)
    assert r.headers["www-authenticate"] == "Bearer"
    problem(center.pay(device, order_id, sealed), "unauthorized", 401)
    assert center.ledger_state() == before
    assert center.report()["checks"]["ok"]


def test_order_ids_sort_by_creation_and_fit_the_routes() -> None:
    """New orders' ids grow with time (their rows go to the right-hand end of the indexes keyed by them:
    orders, ledger transactions `hold:<order>`, transfers `<order>/n`) and stay unguessable and within the
    routes' order id pattern."""
    ids = []
    for _ in range(5):
        ids.append(new_order_id())
        time.sleep(0.002)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    for order_id in ids:
        assert re.fullmatch(r"ord_[0-9a-f]{13}[A-Za-z0-9_-]{16}", order_id), order_id
    assert len({new_order_id()[-16:] for _ in range(100)}) == 100  # 96 random bits each
