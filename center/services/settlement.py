"""Settlement (DESIGN.md flow 5.4; the patent's ST12): a payment becomes one balanced ledger transaction,
exactly once, and a receipt.

Before any lock: the HPKE envelope opens under the center's payment key with info = `coffer/payment/v1` ||
0x00 || order_id; the `coffer-payment` JWS verifies under the payment key the order was made for; its
order_id, device_id and order_hash name this order; its debits add up to the price, each one of a purse the
device may pay from. Then, in one transaction under the device's lock (row lock on PostgreSQL, the write lock
on SQLite), so duplicates in any number of processes serialize: a paid order answers its stored receipt for
the same payment (409 order-settled for another one); otherwise transaction `settle:<order_id>` posts the held
legs that match, voids the others and posts the rest, forfeits a coupon's leftover, and is checked not to
overdraw before the commit. A state counter already used by another order marks the device suspect (the
payment still settles: the device did pay, and the hold covered it). No `exp` check: a valid payment for an
order the center issued settles whenever it arrives.
"""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from center import ledger
from center.db import tx
from center.db.commerce import CreditRow, Device, OrderRow, PaymentCounter
from center.errors import (
    ConflictError,
    InvalidPaymentError,
    InvalidSignatureError,
    NotFoundError,
    WrongDeviceError,
)
from center.services.common import Commerce, require_device
from center.services.orders import hold_legs
from protocol import hpke, jws
from protocol.b64 import b64url_decode
from protocol.center_api import PaymentAnswer
from protocol.errors import EncodingError, HpkeError, JwsError, JwsWrongAudience
from protocol.keys import public_key_from_jwk
from protocol.messages import Payment, Receipt, message_hash
from protocol.money import Money
from protocol.pricing import Debit


class OrderSettledError(ConflictError):
    slug = "order-settled"


def _stored_answer(order: OrderRow) -> PaymentAnswer:
    assert order.receipt_jws is not None
    assert order.payment_hash is not None
    debits = tuple(Debit.model_validate(d) for d in json.loads(order.paid_debits or "[]"))
    return PaymentAnswer(
        order_id=order.order_id, receipt=order.receipt_jws, payment_hash=order.payment_hash, debits=debits
    )


class SettlementService:
    def __init__(self, commerce: Commerce) -> None:
        self.c = commerce

    def pay(self, order_id: str, sealed_b64: str, token_device: str) -> PaymentAnswer:
        token, payment, order = self._verify(order_id, sealed_b64, token_device)
        payment_hash = message_hash(token)
        try:
            with tx.write(self.c.sessions) as session:
                return self._settle(session, order_id, token_device, payment, payment_hash)
        except IntegrityError:
            # only a broken invariant gets here (the device lock serializes settlements): the stored answer
            with tx.read(self.c.sessions) as session:
                stored = session.get(OrderRow, order.order_id)
                if stored is not None and stored.payment_hash == payment_hash:
                    return _stored_answer(stored)
            raise

    # -- checks without a lock ------------------------------------------------------------------------------
    def _verify(self, order_id: str, sealed_b64: str, token_device: str) -> tuple[str, Payment, OrderRow]:
        with tx.read(self.c.sessions) as session:
            order = session.get(OrderRow, order_id)
            if order is None or order.device_id != token_device:
                raise NotFoundError(f"no order {order_id}")
        try:
            sealed = b64url_decode(sealed_b64)
            token = hpke.open(self.c.keys.payment, sealed, info=hpke.payment_info(order_id)).decode("ascii")
        except (EncodingError, HpkeError, UnicodeDecodeError) as exc:
            raise InvalidPaymentError("the payment does not open under the center's payment key") from exc
        try:
            payer = public_key_from_jwk(json.loads(order.payer_jwk))
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
        return token, payment, order

    # -- the transaction ------------------------------------------------------------------------------------
    def _settle(
        self, session: Session, order_id: str, device_id: str, payment: Payment, payment_hash: str
    ) -> PaymentAnswer:
        device = require_device(session, device_id)
        order = session.scalars(select(OrderRow).where(OrderRow.order_id == order_id).with_for_update()).one()
        if order.paid_at is not None:
            if order.payment_hash == payment_hash:
                return _stored_answer(order)
            raise OrderSettledError("the order is already paid by another payment")
        now = self.c.now()
        self._check_counter(session, device, payment, order_id, now)
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
        book.transact(txn, "settle", legs=extra, post_holds=post, void_holds=void, order_id=order_id)
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
        for credit in session.scalars(select(CreditRow).where(CreditRow.held_by == order_id)):
            credit.held_by = None  # planned but not used by the device's payment: free again
        covered = [ledger.wallet(device_id, price.currency)] + [
            ledger.coupon(c.credit_id) for c in credits if c.kind == "coupon"
        ]
        book.require_covered(covered)
        receipt = self.c.sign(
            Receipt(
                iss=self.c.issuer, iat=now, order_id=order_id, device_id=device_id, payment_hash=payment_hash
            )
        )
        order.paid_at, order.counter, order.payment_hash = now, payment.counter, payment_hash
        order.paid_debits = json.dumps([d.model_dump() for d in payment.debits])
        order.receipt_jws = receipt
        session.flush()
        return _stored_answer(order)

    @staticmethod
    def _check_counter(session: Session, device: Device, payment: Payment, order_id: str, now: int) -> None:
        seen = session.get(PaymentCounter, (device.device_id, payment.counter))
        if seen is None:
            session.add(
                PaymentCounter(device_id=device.device_id, counter=payment.counter, order_id=order_id)
            )
        elif seen.order_id != order_id and device.state != "revoked":
            device.state = "suspect"
            device.state_reason = f"state counter {payment.counter} paid {seen.order_id} and {order_id}"
            device.updated_at = now

    @staticmethod
    def _credits(session: Session, order: OrderRow, payment: Payment) -> list[CreditRow]:
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


def _legs(order: OrderRow, price: Money, debits: tuple[Debit, ...], prefix: str = "") -> list[ledger.Leg]:
    legs = hold_legs(order.order_id, order.device_id, price, debits)
    if not prefix:
        return legs
    return [
        ledger.Leg(f"{prefix}:{leg.transfer_id}", leg.debit, leg.credit, leg.amount, leg.currency)
        for leg in legs
    ]
