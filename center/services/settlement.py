"""Settlement (DESIGN.md flow 5.4; the patent's ST12): a payment becomes one balanced ledger transaction,
exactly once, and a receipt.

All in one transaction under the device's lock (row lock on PostgreSQL, the write lock on SQLite; on SQLite
a savepoint of a group commit), so duplicates in any number of processes serialize. First the checks, in this
order: the order is the token's device's (404), the token is still the device's (401), the HPKE envelope
opens under the center's payment key with info = `coffer/payment/v1` || 0x00 || order_id, the
`coffer-payment` JWS verifies under the payment key the order was made for, its order_id, device_id and
order_hash name this order, its debits add up to the price, each one of a purse the device may pay from (422
each). Then a paid order answers its stored receipt for the same payment (409 order-settled for another one);
otherwise transaction `settle:<order_id>` posts the held
legs that match, voids the others and posts the rest, forfeits a coupon's leftover, and is checked not to
overdraw before the commit. A state counter already used by another order marks the device suspect (the
payment still settles: the device did pay, and the hold covered it). No `exp` check: a valid payment for an
order the center issued settles whenever it arrives.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from center import ledger
from center.db import tx
from center.db.commerce import CreditRow, Device, OrderRow, PaymentCounter, table
from center.db.prepared import Prepared
from center.errors import (
    CenterError,
    ConflictError,
    InvalidPaymentError,
    InvalidSignatureError,
    NotFoundError,
    WrongDeviceError,
)
from center.services.common import LOCK_DEVICE, Commerce, check_token, stored_public_key
from center.services.orders import hold_legs
from protocol import hpke, jws
from protocol.b64 import b64url_decode
from protocol.center_api import PaymentAnswer
from protocol.errors import EncodingError, HpkeError, JwsError, JwsWrongAudience
from protocol.messages import Payment, Receipt, message_hash
from protocol.money import Money
from protocol.pricing import Debit


class OrderSettledError(ConflictError):
    slug = "order-settled"


# The payment's statements, built once (SQLAlchemy Core), run on SQLite's DBAPI cursor (center.db.prepared).
_ORDERS = table(OrderRow)
_DEVICES = table(Device)
_COUNTERS = table(PaymentCounter)
_ORDER_COLUMNS = (
    _ORDERS.c.order_id,
    _ORDERS.c.device_id,
    _ORDERS.c.item_id,
    _ORDERS.c.price_amount,
    _ORDERS.c.currency,
    _ORDERS.c.payer_jwk,
    _ORDERS.c.order_hash,
    _ORDERS.c.planned_debits,
    _ORDERS.c.paid_at,
    _ORDERS.c.payment_hash,
    _ORDERS.c.paid_debits,
    _ORDERS.c.receipt_jws,
)
_ORDER_FOR_UPDATE = Prepared(
    select(*_ORDER_COLUMNS).where(_ORDERS.c.order_id == bindparam("p_order")).with_for_update()
)
_ORDER = Prepared(select(*_ORDER_COLUMNS).where(_ORDERS.c.order_id == bindparam("p_order")))
_COUNTER_VALUES: dict[str, Any] = {
    "device_id": bindparam("p_device"),
    "counter": bindparam("p_counter"),
    "order_id": bindparam("p_order"),
}
_NEW_COUNTER = {
    "sqlite": Prepared(sqlite_insert(_COUNTERS).values(_COUNTER_VALUES).on_conflict_do_nothing()),
    "postgresql": Prepared(pg_insert(_COUNTERS).values(_COUNTER_VALUES).on_conflict_do_nothing()),
}
_COUNTER_ORDER = Prepared(
    select(_COUNTERS.c.order_id).where(
        _COUNTERS.c.device_id == bindparam("p_device"), _COUNTERS.c.counter == bindparam("p_counter")
    )
)
_MARK_SUSPECT = Prepared(
    update(_DEVICES)
    .where(_DEVICES.c.device_id == bindparam("p_device"))
    .values(state="suspect", state_reason=bindparam("p_reason"), updated_at=bindparam("p_now"))
)
_MARK_PAID = Prepared(
    update(_ORDERS)
    .where(_ORDERS.c.order_id == bindparam("p_order"))
    .values(
        paid_at=bindparam("p_now"),
        counter=bindparam("p_counter"),
        payment_hash=bindparam("p_hash"),
        paid_debits=bindparam("p_debits"),
        receipt_jws=bindparam("p_receipt"),
    )
)


def _stored_answer(order: Any) -> PaymentAnswer:
    assert order.receipt_jws is not None
    assert order.payment_hash is not None
    debits = tuple(Debit.model_validate(d) for d in json.loads(order.paid_debits or "[]"))
    return PaymentAnswer(
        order_id=order.order_id, receipt=order.receipt_jws, payment_hash=order.payment_hash, debits=debits
    )


@dataclass(frozen=True)
class EarlyPayment:
    """A payment opened, verified and answered with a signed receipt before its write transaction
    (`SettlementService._check_early`), against the order row as read then (without the lock)."""

    now: int
    checked: tuple[Any, ...]  # what `_verify` judged of the order row (`_checked`)
    token: str
    payment: Payment
    payment_hash: str
    receipt: str

    def fits(self, order: Any) -> bool:
        """Whether the row read under the device's lock is the one the payment was checked against."""
        return _checked(order) == self.checked


def _checked(order: Any) -> tuple[Any, ...]:
    """The members of an order row that `_verify` judges a payment by."""
    return (order.order_id, order.device_id, order.payer_jwk, order.order_hash, order.price_amount)


class SettlementService:
    def __init__(self, commerce: Commerce) -> None:
        self.c = commerce

    def pay(
        self, order_id: str, sealed_b64: str, token_device: str, token_hash: str | None = None
    ) -> PaymentAnswer:
        """Settle; `token_hash`: the request's token when the route took the device from `TokenHints` (checked
        here against the device row)."""
        hashes: list[str] = []  # the payment's hash, once it opened
        try:
            return self.c.write(
                lambda session: self._settle(session, order_id, sealed_b64, token_device, token_hash, hashes)
            )
        except IntegrityError:
            stored = self._stored(order_id, hashes)
            if stored is None:
                raise
            return stored

    async def pay_async(
        self, order_id: str, sealed_b64: str, token_device: str, token_hash: str | None = None
    ) -> PaymentAnswer:
        """`pay` from the event loop (the lean payment path): the same operation, queued to the group commit
        without a thread of its own waiting (`Commerce.write_async`)."""
        hashes: list[str] = []
        early = self._check_early(order_id, sealed_b64, token_device) if self.c.settings.workers > 1 else None
        try:
            return await self.c.write_async(
                lambda session: self._settle(
                    session, order_id, sealed_b64, token_device, token_hash, hashes, early
                )
            )
        except IntegrityError:
            stored = await asyncio.to_thread(self._stored, order_id, hashes)
            if stored is None:
                raise
            return stored

    def _stored(self, order_id: str, hashes: list[str]) -> PaymentAnswer | None:
        """After an IntegrityError (only a broken invariant gets there: the device lock serializes
        settlements): the stored answer when the order is paid by this very payment."""
        with tx.read(self.c.sessions) as session:
            stored = session.get(OrderRow, order_id)
            if stored is not None and hashes and stored.payment_hash == hashes[0]:
                return _stored_answer(stored)
        return None

    def _check_early(self, order_id: str, sealed_b64: str, device_id: str) -> EarlyPayment | None:
        """The payment's crypto before its write transaction, with several workers (`workers > 1`): like
        `OrderService._sign_early`, scheduling only. The order row is read without any lock (a WAL reader
        does not wait for the writers), the envelope opened, the signature and the debits checked as
        `_verify` does, and the receipt signed; the transaction uses them only if the row it reads under the
        device's lock is the same in every member `_verify` judged (`EarlyPayment.fits`), after its own
        404 and 401 checks, so the answer is the one it would have made itself. Any refusal here is left to
        the transaction (it judges again, in the documented order). HPKE open, signature check and receipt
        (about half of a payment's CPU) then run outside SQLite's write lock, in parallel with the other
        workers' batches; one worker gains nothing from it (one more read per payment)."""
        try:
            with self.c.engine.connect() as conn:
                order = _ORDER.one_or_none(conn, {"p_order": order_id})
        except SQLAlchemyError:
            return None
        if order is None or order.device_id != device_id or order.paid_at is not None:
            return None
        try:
            token, payment = self._verify(order, sealed_b64)
        except CenterError:
            return None
        now = self.c.now()
        payment_hash = message_hash(token)
        receipt = self._receipt(now, order_id, device_id, payment_hash)
        return EarlyPayment(now, _checked(order), token, payment, payment_hash, receipt)

    def _receipt(self, now: int, order_id: str, device_id: str, payment_hash: str) -> str:
        return self.c.sign(
            Receipt(
                iss=self.c.issuer, iat=now, order_id=order_id, device_id=device_id, payment_hash=payment_hash
            )
        )

    # -- the checks (inside the transaction: one database round for the payment, not a read before it) -----
    def _verify(self, order: Any, sealed_b64: str) -> tuple[str, Payment]:
        """The payment JWS and its payload, checked against `order` (a row of `_ORDER_FOR_UPDATE`)."""
        order_id = order.order_id
        try:
            sealed = b64url_decode(sealed_b64)
            token = hpke.open(self.c.keys.payment, sealed, info=hpke.payment_info(order_id)).decode("ascii")
        except (EncodingError, HpkeError, UnicodeDecodeError) as exc:
            raise InvalidPaymentError("the payment does not open under the center's payment key") from exc
        try:
            payer = stored_public_key(order.payer_jwk)
            payment = jws.verify(token, Payment, keys=payer, now=self.c.now(), audience=order.device_id)
        except JwsWrongAudience as exc:
            raise WrongDeviceError("the payment names another device") from exc
        except JwsError as exc:
            raise InvalidSignatureError(
                f"the payment is not signed by this device's payment key: {exc}"
            ) from exc
        if payment.order_id != order.order_id or payment.order_hash != order.order_hash:
            raise InvalidPaymentError("the payment names another order")
        if sum(d.amount for d in payment.debits) != order.price_amount:
            raise InvalidPaymentError("the payment's debits do not add up to the price")
        kinds = [d.purse for d in payment.debits]
        if ("ticket" in kinds and len(kinds) != 1) or kinds.count("coupon") > 1 or kinds.count("prepaid") > 1:
            raise InvalidPaymentError("the debits are not a ticket alone or at most one coupon and prepaid")
        if any(d.amount <= 0 or (d.purse == "prepaid") != (d.credit_id is None) for d in payment.debits):
            raise InvalidPaymentError("a debit line is malformed")
        return token, payment

    # -- the transaction ------------------------------------------------------------------------------------
    def _settle(
        self,
        session: Session,
        order_id: str,
        sealed_b64: str,
        device_id: str,
        token_hash: str | None,
        hashes: list[str],
        early: EarlyPayment | None = None,
    ) -> PaymentAnswer:
        conn = session.connection()
        device = LOCK_DEVICE.one_or_none(conn, {"p_device": device_id})
        order = _ORDER_FOR_UPDATE.one_or_none(conn, {"p_order": order_id})
        if device is None or order is None or order.device_id != device_id:
            raise NotFoundError(f"no order {order_id}")
        check_token(self.c, device, token_hash)
        if early is not None and early.fits(order):
            token, payment, payment_hash = early.token, early.payment, early.payment_hash
        else:
            early = None  # the order row changed since (or none was made): checked here, as without it
            token, payment = self._verify(order, sealed_b64)
            payment_hash = message_hash(token)
        hashes.append(payment_hash)
        if order.paid_at is not None:
            if order.payment_hash == payment_hash:
                return _stored_answer(order)
            raise OrderSettledError("the order is already paid by another payment")
        now = early.now if early is not None else self.c.now()
        self._check_counter(conn, device, payment, order_id, now)
        price = Money(amount=order.price_amount, currency=order.currency)
        credits = self._credits(session, order, payment)
        book = ledger.Ledger(session, now)
        planned = {(leg.debit, leg.amount) for leg in _legs(order, price, payment.debits)}
        holds = book.open_holds(f"hold:{order_id}")
        post = [h.transfer_id for h in holds if (h.debit_account, h.amount) in planned]
        void = [h.transfer_id for h in holds if h.transfer_id not in post]
        posted = {(h.debit_account, h.amount) for h in holds if h.transfer_id in post}
        extra = [
            leg
            for leg in _legs(order, price, payment.debits, "settle")
            if (leg.debit, leg.amount) not in posted
        ]
        txn = f"settle:{order_id}"
        # `fresh`: no `settle:<order>` exists, as it commits only with paid_at, read NULL under the lock (the
        # primary key still refuses one); `known`: the holds just read, not read again one by one
        book.transact(
            txn,
            "settle",
            legs=extra,
            post_holds=post,
            void_holds=void,
            order_id=order_id,
            fresh=True,
            known=holds,
        )
        forfeits = []
        for credit in credits:
            if credit.kind == "coupon":
                account = ledger.coupon(credit.credit_id)
                left = book.available(account)
                if left > 0:
                    forfeits.append(
                        ledger.Leg(
                            f"{txn}/forfeit/{credit.credit_id}",
                            account,
                            ledger.promotions(price.currency),
                            left,
                            price.currency,
                        )
                    )
            credit.spent_by, credit.held_by = order_id, None
        if forfeits:
            book.extend(txn, forfeits)
        if any(d.get("credit_id") for d in json.loads(order.planned_debits)):
            # only credits the order planned can be held by it
            for credit in session.scalars(select(CreditRow).where(CreditRow.held_by == order_id)):
                credit.held_by = None  # planned but not used by the device's payment: free again
        covered = [ledger.wallet(device_id, price.currency)] + [
            ledger.coupon(c.credit_id) for c in credits if c.kind == "coupon"
        ]
        book.require_covered(covered)
        receipt = (
            early.receipt if early is not None else self._receipt(now, order_id, device_id, payment_hash)
        )
        _MARK_PAID.execute(
            conn,
            {
                "p_order": order_id,
                "p_now": now,
                "p_counter": payment.counter,
                "p_hash": payment_hash,
                "p_debits": json.dumps([d.model_dump() for d in payment.debits]),
                "p_receipt": receipt,
            },
        )
        session.flush()
        return PaymentAnswer(
            order_id=order_id, receipt=receipt, payment_hash=payment_hash, debits=payment.debits
        )

    @staticmethod
    def _check_counter(conn: Any, device: Any, payment: Payment, order_id: str, now: int) -> None:
        """Record which order this state counter paid; one seen before for another order marks the device
        suspect (a clone or a rollback)."""
        params = {"p_device": device.device_id, "p_counter": payment.counter, "p_order": order_id}
        if _NEW_COUNTER[conn.dialect.name].rowcount(conn, params) == 1:
            return
        seen = _COUNTER_ORDER.one(conn, params)[0]
        if seen != order_id and device.state != "revoked":
            reason = f"state counter {payment.counter} paid {seen} and {order_id}"
            _MARK_SUSPECT.execute(conn, {"p_device": device.device_id, "p_reason": reason, "p_now": now})

    @staticmethod
    def _credits(session: Session, order: Any, payment: Payment) -> list[CreditRow]:
        """The coupons and tickets the payment spends, each checked to be this device's, unspent, and
        unexpired at the payment's `iat` (the device's time floor when it paid)."""
        found = []
        for debit in payment.debits:
            if debit.credit_id is None:
                continue
            credit = session.get(CreditRow, debit.credit_id)
            if (
                credit is None
                or credit.device_id != order.device_id
                or credit.kind != debit.purse
                or credit.redeemed_at is None
                or credit.spent_by is not None
                or credit.held_by not in (None, order.order_id)
                or credit.exp <= payment.iat
            ):
                raise InvalidPaymentError(f"credit {debit.credit_id} cannot pay this order")
            if credit.kind == "ticket" and credit.item_id != order.item_id:
                raise InvalidPaymentError("the ticket is for another item")
            if credit.kind == "coupon" and credit.currency != order.currency:
                raise InvalidPaymentError("the coupon is in another currency")
            found.append(credit)
        return found


def _legs(order: Any, price: Money, debits: tuple[Debit, ...], prefix: str = "") -> list[ledger.Leg]:
    legs = hold_legs(order.order_id, order.device_id, price, debits)
    if not prefix:
        return legs
    return [
        ledger.Leg(f"{prefix}:{leg.transfer_id}", leg.debit, leg.credit, leg.amount, leg.currency)
        for leg in legs
    ]
