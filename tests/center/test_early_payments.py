"""A payment's crypto made before its write transaction (`SettlementService._check_early`,
docs/center-commerce.md "Workers"): with several workers the envelope is opened, the signature and debits
checked and the receipt signed against the order row as read without a lock; the transaction uses them only
if the row it reads under the device's lock is the same in every member the checks judged, after its own
404 and 401 checks. A row changed since is judged again inside; a payment refused early is refused by the
transaction in the documented order, as with one worker. One worker checks inside (no early read)."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from center.db import tx
from center.db.commerce import OrderRow
from center.services.catalog import CatalogService
from center.services.common import canonical
from center.services.settlement import EarlyPayment, SettlementService
from center.settings import CenterSettings
from protocol.messages import Jwk
from tests.center.commerce import Center, SoftDevice, _key, problem, verify_receipt
from tests.center.conftest import Media, add

PRICE = 300


@pytest.fixture
def early(monkeypatch: pytest.MonkeyPatch) -> list[EarlyPayment | None]:
    """Every early check made (None: none could be made), in order."""
    made: list[EarlyPayment | None] = []
    original = SettlementService._check_early

    def recording(self: SettlementService, order_id: str, sealed: str, device_id: str) -> EarlyPayment | None:
        result = original(self, order_id, sealed, device_id)
        made.append(result)
        return result

    monkeypatch.setattr(SettlementService, "_check_early", recording)
    return made


def _ordered(center: Center, item: str) -> tuple[SoftDevice, dict[str, str]]:
    device = center.device()
    center.fund(device, 3 * PRICE)
    r = center.order(device, item)
    assert r.status_code == 201
    return device, r.json()


def test_a_payment_checked_early_is_answered_with_its_receipt(
    settings: CenterSettings, catalog: CatalogService, media: Media, early: list[EarlyPayment | None]
) -> None:
    item = add(catalog, media.text, title="Text", price=PRICE)
    center = Center(settings.model_copy(update={"workers": 2}))
    device, answer = _ordered(center, item)
    sealed = device.payment(center.commerce, answer["order"])
    r = center.pay(device, answer["order_id"], sealed)
    assert r.status_code == 200, r.text
    made = early[-1]
    assert made is not None
    assert r.json()["receipt"] == made.receipt
    assert r.json()["payment_hash"] == made.payment_hash
    receipt = verify_receipt(center.commerce, made.receipt, device.device_id)
    assert receipt.order_id == answer["order_id"]
    again = center.pay(device, answer["order_id"], sealed)
    assert again.status_code == 200
    assert again.json() == r.json()  # the stored receipt (the order is paid: no early check)
    assert early[-1] is None
    assert center.report()["checks"]["ok"]


def test_one_worker_checks_inside_the_transaction(
    settings: CenterSettings, catalog: CatalogService, media: Media, early: list[EarlyPayment | None]
) -> None:
    item = add(catalog, media.text, title="Text", price=PRICE)
    center = Center(settings)
    device, answer = _ordered(center, item)
    sealed = device.payment(center.commerce, answer["order"])
    assert center.pay(device, answer["order_id"], sealed).status_code == 200
    assert early == []


def test_an_order_row_changed_since_the_early_check_is_judged_again(
    settings: CenterSettings,
    catalog: CatalogService,
    media: Media,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Between the early check and the transaction the order's payment key changes (a stand-in for any
    member the checks judged): the payment, signed by the old key, is refused inside as it would be without
    the early check, and nothing moves."""
    item = add(catalog, media.text, title="Text", price=PRICE)
    center = Center(settings.model_copy(update={"workers": 2}))
    device, answer = _ordered(center, item)
    sealed = device.payment(center.commerce, answer["order"])
    original = SettlementService._check_early
    made: list[EarlyPayment | None] = []

    def then_changed(self: SettlementService, order_id: str, s: str, device_id: str) -> EarlyPayment | None:
        result = original(self, order_id, s, device_id)
        made.append(result)
        other = canonical(Jwk.from_public_key(_key().public_key()).model_dump())
        with tx.write(center.commerce.sessions) as session:
            session.execute(update(OrderRow).where(OrderRow.order_id == order_id).values(payer_jwk=other))
        return result

    monkeypatch.setattr(SettlementService, "_check_early", then_changed)
    before = center.ledger_state()
    r = center.pay(device, answer["order_id"], sealed)
    assert len(made) == 1
    assert made[0] is not None  # it passed the early check, against the old row
    problem(r, "invalid-signature", 422)
    assert center.ledger_state() == before
    assert center.report()["checks"]["ok"]


def test_refusals_keep_their_answers_and_order(
    settings: CenterSettings, catalog: CatalogService, media: Media, early: list[EarlyPayment | None]
) -> None:
    item = add(catalog, media.text, title="Text", price=PRICE)
    center = Center(settings.model_copy(update={"workers": 2}))
    device, answer = _ordered(center, item)
    other, _other_answer = _ordered(center, item)
    before = center.ledger_state()
    forged = device.payment(center.commerce, answer["order"], signer=_key())
    problem(center.pay(device, answer["order_id"], forged), "invalid-signature", 422)
    sealed = device.payment(center.commerce, answer["order"])
    problem(center.pay(other, answer["order_id"], sealed), "not-found", 404)
    assert early == [None, None]  # refused early: judged inside
    assert center.ledger_state() == before
    assert center.pay(device, answer["order_id"], sealed).status_code == 200
