"""Orders (DESIGN.md flow 5.1, 5.2; the patent's ST6–ST8): a hold, a fresh Ke and salt, the signed order.

`create` runs in one transaction under the device's lock: the same Idempotency-Key and body answer the same
order (another body: idempotency-mismatch); a revoked or suspect device, or one with more than `max_unpaid`
unpaid deliveries, is refused; the device's purses are read from the ledger (wallet balance minus open holds,
unspent coupons and tickets), `protocol.pricing.debits` decides what pays, and those debits are held as
pending transfers, checked not to overdraw before the commit. Ke and the stream salt are sealed under the
data key; Ke is HPKE-wrapped to the device's KEM key inside the signed order.
`status` tells held / paid / unpaid-delivery / expired; orders never delivered and past `exp` give their holds
back (voided) the next time the device orders.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from center import ledger
from center.db import tx
from center.db.commerce import CreditRow, LedgerAccount, OrderRow, table
from center.db.models import Item
from center.db.prepared import Prepared
from center.errors import (
    ConflictError,
    IdempotencyMismatchError,
    InsufficientFundsError,
    ItemNotFoundError,
    NotFoundError,
    OrderExpiredError,
    UnpaidLimitError,
    WrongDeviceError,
)
from center.sealing import seal
from center.services.common import (
    LOCK_DEVICE,
    Commerce,
    canonical,
    check_token,
    require_device,
    require_state,
    stored_public_key,
)
from protocol import hpke, pricing, stream
from protocol.b64 import b64url_encode
from protocol.center_api import OrderAnswer, OrderRequest, OrderState, OrderStatus
from protocol.errors import PricingShortfall
from protocol.messages import Order, message_hash
from protocol.money import Money
from protocol.pricing import Coupon, Debit, Purses, Ticket

SEGMENT_SIZE = stream.DEFAULT_SEGMENT_SIZE

# The order's statements, built once (SQLAlchemy Core) and run on SQLite's DBAPI cursor (center.db.prepared).
_ORDERS = table(OrderRow)
_ITEMS = table(Item)
_CREDITS = table(CreditRow)
_ACCOUNTS = table(LedgerAccount)
_BY_KEY = Prepared(
    select(
        _ORDERS.c.order_id,
        _ORDERS.c.request_hash,
        _ORDERS.c.order_jws,
        _ORDERS.c.content_length,
        _ORDERS.c.segment_size,
        _ORDERS.c.exp,
    ).where(_ORDERS.c.device_id == bindparam("p_device"), _ORDERS.c.idempotency_key == bindparam("p_key"))
)
_ITEM = Prepared(
    select(
        _ITEMS.c.item_id,
        _ITEMS.c.price_amount,
        _ITEMS.c.currency,
        _ITEMS.c.content_sha256,
        _ITEMS.c.content_length,
    ).where(_ITEMS.c.item_id == bindparam("p_item"), _ITEMS.c.removed_at.is_(None))
)
_WALLET_AVAILABLE = (
    select(_ACCOUNTS.c.credits_posted - _ACCOUNTS.c.debits_posted - _ACCOUNTS.c.debits_pending)
    .where(_ACCOUNTS.c.account_id == bindparam("p_wallet"))
    .scalar_subquery()
)
#: (orders expired undelivered with their holds still open, unpaid deliveries, the wallet's available amount)
_DEVICE_STATE = Prepared(
    select(
        func.count().filter(_ORDERS.c.delivered_at.is_(None)),
        func.count().filter(_ORDERS.c.delivered_at.is_not(None)),
        _WALLET_AVAILABLE,
    ).where(
        # the terms of the partial index ix_orders_open_by_exp (open orders only, not the whole history)
        _ORDERS.c.device_id == bindparam("p_device"),
        _ORDERS.c.paid_at.is_(None),
        _ORDERS.c.released_at.is_(None),
        _ORDERS.c.exp <= bindparam("p_now"),
    )
)
_UNSPENT = Prepared(
    select(
        _CREDITS.c.credit_id, _CREDITS.c.kind, _CREDITS.c.item_id, _CREDITS.c.currency, _CREDITS.c.exp
    ).where(
        _CREDITS.c.device_id == bindparam("p_device"),
        _CREDITS.c.redeemed_at.is_not(None),
        _CREDITS.c.held_by.is_(None),
        _CREDITS.c.spent_by.is_(None),
        _CREDITS.c.exp > bindparam("p_now"),
        or_(_CREDITS.c.kind == "coupon", _CREDITS.c.kind == "ticket"),  # not IN (…): no expanding parameter
    )
)
_INSERT_ORDER = Prepared(insert(_ORDERS))
_HOLD_CREDITS = (
    update(_CREDITS)
    .where(_CREDITS.c.credit_id.in_(bindparam("p_ids", expanding=True)))
    .values(held_by=bindparam("p_order"))
)


def new_order_id() -> str:
    """`ord_`, the time in microseconds (13 hex digits) and 96 random bits: ids that sort by creation, so
    each new order's rows go to the right-hand end of the order, ledger transaction and transfer indexes
    (fewer pages written per commit than random ids spread over the whole index)."""
    return f"ord_{time.time_ns() // 1000:013x}{secrets.token_urlsafe(12)}"


@dataclass(frozen=True)
class OrderAnswerRow:
    """What `answer` reads from an order."""

    order_id: str
    order_jws: str
    content_length: int
    segment_size: int
    exp: int


def order_state(order: OrderRow, now: int) -> OrderState:
    if order.paid_at is not None:
        return "paid"
    if now < order.exp:
        return "held"
    return "unpaid-delivery" if order.delivered_at is not None else "expired"


def answer(order: Any) -> OrderAnswer:
    """The answer for an order (an `OrderRow`, or a row with its order_id, order_jws, content_length,
    segment_size and exp)."""
    return OrderAnswer(
        order_id=order.order_id,
        order=order.order_jws,
        content_url=f"/v1/orders/{order.order_id}/content",
        content_length=stream.ciphertext_length(order.content_length, order.segment_size),
        exp=order.exp,
    )


def status(order: OrderRow, now: int) -> OrderStatus:
    return OrderStatus(
        order_id=order.order_id,
        item_id=order.item_id,
        device_id=order.device_id,
        price=Money(amount=order.price_amount, currency=order.currency),
        state=order_state(order, now),
        iat=order.iat,
        exp=order.exp,
        delivered=order.delivered_at is not None,
        receipt=order.receipt_jws,
    )


def hold_legs(order_id: str, device_id: str, price: Money, debits: tuple[Debit, ...]) -> list[ledger.Leg]:
    """The ledger legs that pay `debits`: prepaid from the wallet, a coupon from its account, a ticket from
    promotions (the promotion pays the item); each into revenue."""
    cur = price.currency
    legs = []
    for n, debit in enumerate(debits):
        if debit.purse == "prepaid":
            source = ledger.wallet(device_id, cur)
        elif debit.purse == "coupon":
            source = ledger.coupon(debit.credit_id or "")
        else:
            source = ledger.promotions(cur)
        legs.append(ledger.Leg(f"{order_id}/{n}", source, ledger.revenue(cur), debit.amount, cur))
    return legs


def purses(
    session: Session, book: ledger.Ledger, device_id: str, currency: str, now: int, wallet: int | None = None
) -> Purses:
    """The device's purses as the center's ledger has them: what an order may still hold (`wallet`: the
    wallet's available amount when the caller has just read it)."""
    wallet = book.available(ledger.wallet(device_id, currency)) if wallet is None else wallet
    coupons, tickets = [], []
    for credit in _UNSPENT.rows(session.connection(), {"p_device": device_id, "p_now": now}):
        if credit.kind == "ticket" and credit.item_id:
            tickets.append(Ticket(credit_id=credit.credit_id, item_id=credit.item_id, exp=credit.exp))
        elif credit.kind == "coupon" and credit.currency:
            left = book.available(ledger.coupon(credit.credit_id))
            if left > 0:
                money = Money(amount=left, currency=credit.currency)
                coupons.append(Coupon(credit_id=credit.credit_id, amount=money, exp=credit.exp))
    return Purses(prepaid={currency: max(0, wallet)}, coupons=tuple(coupons), tickets=tuple(tickets))


@dataclass(frozen=True)
class EarlyOrder:
    """An order's id, sealed Ke and salt, and signed order, made before its transaction (`_sign_early`) for
    the device keys and item row this process had seen."""

    now: int
    order_id: str
    sealed_secret: bytes
    token: str
    order_hash: str
    exp: int
    kem_jwk: str
    aead: str
    item: tuple[Any, ...]

    def fits(self, device: Any, item: Any) -> bool:
        """Whether the rows read under the device's lock are the ones it was made for."""
        return device.kem_jwk == self.kem_jwk and device.aead == self.aead and tuple(item) == self.item


class SeenRows:
    """Per process: each device's KEM key and AEAD, and each item's row, as its last order read them under
    the lock (what `_sign_early` signs for; a hint, checked by `EarlyOrder.fits`, never trusted)."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._devices: dict[str, tuple[str, str]] = {}
        self._items: dict[str, Any] = {}

    def get(self, device_id: str, item_id: str) -> tuple[tuple[str, str], Any] | None:
        device, item = self._devices.get(device_id), self._items.get(item_id)
        return None if device is None or item is None else (device, item)

    def remember(self, device: Any, item: Any) -> None:
        for found, key, value in (
            (self._devices, device.device_id, (device.kem_jwk, device.aead)),
            (self._items, item.item_id, item),
        ):
            if key not in found and len(found) >= self._size:
                found.pop(next(iter(found)), None)
            found[key] = value


class OrderService:
    def __init__(self, commerce: Commerce) -> None:
        self.c = commerce
        self._seen = SeenRows()

    def create(
        self, request: OrderRequest, token_device: str, idempotency_key: str, token_hash: str | None = None
    ) -> tuple[OrderAnswer, bool]:
        """The order for this request; True when it was made now (False: answered again by its key).
        `token_hash`: the request's token when the route took the device from `TokenHints`; checked here
        against the locked device row."""
        work = self._creation(request, token_device, idempotency_key, token_hash)
        try:
            row, created = self.c.write(work)
        except IntegrityError as exc:
            raise ConflictError("a concurrent request used this Idempotency-Key; try again") from exc
        return answer(row), created

    async def create_async(
        self, request: OrderRequest, token_device: str, idempotency_key: str, token_hash: str | None = None
    ) -> tuple[OrderAnswer, bool]:
        """`create` from the event loop (the lean order path): the same operation, queued to the group
        commit without a thread of its own waiting (`Commerce.write_async`)."""
        work = self._creation(request, token_device, idempotency_key, token_hash)
        try:
            row, created = await self.c.write_async(work)
        except IntegrityError as exc:
            raise ConflictError("a concurrent request used this Idempotency-Key; try again") from exc
        return answer(row), created

    def _creation(
        self, request: OrderRequest, token_device: str, idempotency_key: str, token_hash: str | None
    ) -> Callable[[Session], tuple[Any, bool]]:
        """The write operation of `create` (its checks that need no database come first): the order's row
        for `answer` (made after the write, outside SQLite's write lock), and whether it was made now."""
        if request.device_id != token_device:
            raise WrongDeviceError("the order names another device than the token's")
        request_hash = hashlib.sha256(canonical(request.model_dump()).encode()).hexdigest()
        early = self._sign_early(request) if self.c.settings.workers > 1 else None

        def work(session: Session) -> tuple[Any, bool]:
            conn = session.connection()
            device = LOCK_DEVICE.one_or_none(conn, {"p_device": request.device_id})
            if device is None:
                raise NotFoundError(f"no device {request.device_id}")
            check_token(self.c, device, token_hash)
            existing = _BY_KEY.one_or_none(conn, {"p_device": device.device_id, "p_key": idempotency_key})
            if existing is not None:
                if existing.request_hash != request_hash:
                    raise IdempotencyMismatchError("this Idempotency-Key was used with another request")
                return existing, False
            require_state(device)
            item = _ITEM.one_or_none(conn, {"p_item": request.item_id})
            if item is None:
                raise ItemNotFoundError(request.item_id)
            self._seen.remember(device, item)
            return self._place(session, device, item, idempotency_key, request_hash, early), True

        return work

    def _sign_early(self, request: OrderRequest) -> EarlyOrder | None:
        """The order's secrets and signature made before its write transaction, for the device's keys and
        the item as this process last saw them (None: not seen yet). Scheduling only, like the writer gate:
        the transaction uses them only if the rows it reads under the lock still say the same
        (`EarlyOrder.fits`), so the answer is the one it would have made itself. With several workers
        (`settings.workers > 1`) the crypto (HPKE wrap, ECDSA signature, sealing: about a third of an
        order's CPU) then runs outside SQLite's write lock, in parallel with the other workers' batches; one
        worker gains nothing from it (measured ~0.02–0.08 ms more CPU per order), so it signs inside
        (docs/center-commerce.md, Workers)."""
        seen = self._seen.get(request.device_id, request.item_id)
        if seen is None:
            return None
        (kem_jwk, aead), item = seen
        now = self.c.now()
        order_id = new_order_id()
        ke, salt = os.urandom(32), os.urandom(32)
        token, exp = self._signed(now, order_id, ke, request.device_id, kem_jwk, aead, item)
        sealed = seal(self.c.keys.data_key, ke + salt, order_id.encode())
        return EarlyOrder(now, order_id, sealed, token, message_hash(token), exp, kem_jwk, aead, tuple(item))

    def _signed(
        self, now: int, order_id: str, ke: bytes, device_id: str, kem_jwk: str, aead: str, item: Any
    ) -> tuple[str, int]:
        """The signed order (its Ke HPKE-wrapped to the device's KEM key) and its `exp`."""
        wrapped = hpke.seal(stored_public_key(kem_jwk), ke, info=hpke.content_key_info(order_id))
        exp = now + self.c.settings.order_ttl
        token = self.c.sign(
            Order(
                iss=self.c.issuer,
                iat=now,
                order_id=order_id,
                item_id=item.item_id,
                device_id=device_id,
                price=Money(amount=item.price_amount, currency=item.currency),
                content_sha256=item.content_sha256,
                content_length=item.content_length,
                aead=aead,
                segment_size=SEGMENT_SIZE,
                wrapped_key=b64url_encode(wrapped),
                exp=exp,
            )
        )
        return token, exp

    def _place(
        self, session: Session, device: Any, item: Any, key: str, request_hash: str, early: EarlyOrder | None
    ) -> OrderAnswerRow:
        if early is not None and not early.fits(device, item):
            early = None  # the device was re-bound or the item changed since: made here, as without it
        now = early.now if early is not None else self.c.now()
        conn = session.connection()
        book = ledger.Ledger(session, now)
        wallet = ledger.wallet(device.device_id, item.currency)
        stale, unpaid, available = _DEVICE_STATE.one(
            conn, {"p_device": device.device_id, "p_now": now, "p_wallet": wallet}
        )
        if stale:
            self.release_expired(session, book, device.device_id, now)
            available = book.available_or_none(wallet)
        if unpaid > self.c.settings.max_unpaid:
            raise UnpaidLimitError(f"{unpaid} unpaid deliveries (the limit is {self.c.settings.max_unpaid})")
        price = Money(amount=item.price_amount, currency=item.currency)
        book.open_house_accounts(price.currency)
        if available is None:
            book.open_account(wallet, "wallet", price.currency, device.device_id)
        try:
            debits = pricing.debits(
                price,
                purses(session, book, device.device_id, price.currency, now, int(available or 0)),
                item.item_id,
            )
        except PricingShortfall as exc:
            raise InsufficientFundsError(f"balance minus holds cannot pay {price}") from exc
        if early is not None:
            order_id, token, exp, sealed = early.order_id, early.token, early.exp, early.sealed_secret
        else:
            order_id = new_order_id()
            ke, salt = os.urandom(32), os.urandom(32)
            token, exp = self._signed(now, order_id, ke, device.device_id, device.kem_jwk, device.aead, item)
            sealed = seal(self.c.keys.data_key, ke + salt, order_id.encode())
        row = {
            "order_id": order_id,
            "device_id": device.device_id,
            "idempotency_key": key,
            "request_hash": request_hash,
            "item_id": item.item_id,
            "blob_sha256": item.content_sha256,
            "price_amount": price.amount,
            "currency": price.currency,
            "content_length": item.content_length,
            "aead": device.aead,
            "segment_size": SEGMENT_SIZE,
            "sealed_secret": sealed,
            "payer_jwk": device.payment_jwk,
            "order_jws": token,
            "order_hash": early.order_hash if early is not None else message_hash(token),
            "planned_debits": json.dumps([d.model_dump() for d in debits]),
            "iat": now,
            "exp": exp,
            "delivered_at": None,
            "paid_at": None,
            "released_at": None,
            "counter": None,
            "payment_hash": None,
            "paid_debits": None,
            "receipt_jws": None,
        }
        _INSERT_ORDER.execute(conn, row)
        # the wallet's and coupons' CHECK constraint refuses an overdraft while the holds are written
        book.post(
            f"hold:{order_id}",  # a fresh order id: no earlier transaction can have it
            "hold",
            hold_legs(order_id, device.device_id, price, debits),
            pending=True,
            order_id=order_id,
            fresh=True,
        )
        credit_ids = [d.credit_id for d in debits if d.credit_id is not None]
        if credit_ids:
            conn.execute(_HOLD_CREDITS, {"p_ids": credit_ids, "p_order": order_id})
        return OrderAnswerRow(order_id, token, item.content_length, SEGMENT_SIZE, exp)  # the row just written

    @staticmethod
    def release_expired(session: Session, book: ledger.Ledger, device_id: str, now: int) -> None:
        """Void the holds of orders that expired without a delivery: the device never had the content, so it
        cannot have paid (its payment would need the stream)."""
        stale = session.scalars(
            select(OrderRow).where(
                OrderRow.device_id == device_id,
                OrderRow.paid_at.is_(None),
                OrderRow.delivered_at.is_(None),
                OrderRow.released_at.is_(None),
                OrderRow.exp <= now,
            )
        )
        for order in stale:
            holds = [h.transfer_id for h in book.open_holds(f"hold:{order.order_id}")]
            book.resolve(f"release:{order.order_id}", "release", holds, post=False, order_id=order.order_id)
            for credit in session.scalars(select(CreditRow).where(CreditRow.held_by == order.order_id)):
                credit.held_by = None
            order.released_at = now

    def get(self, order_id: str, token_device: str) -> OrderStatus:
        with tx.read(self.c.sessions) as session:
            order = session.get(OrderRow, order_id)
            if order is None or order.device_id != token_device:
                raise NotFoundError(f"no order {order_id}")
            return status(order, self.c.now())

    def for_delivery(self, order_id: str, token_device: str) -> OrderRow:
        """The order to stream, marked delivered at its first request (one small write, once)."""
        order, first = self.delivery_check(order_id, token_device)
        if first:
            self.record_delivery(order_id, token_device)
        return order

    def delivery_check(self, order_id: str, token_device: str) -> tuple[OrderRow, bool]:
        """The order to stream (read only), and whether its first delivery is still to be recorded
        (`record_delivery`). An order not yet delivered that has expired or been released is refused here,
        before any byte (OrderExpiredError)."""
        with tx.read(self.c.sessions) as session:
            order = session.get(OrderRow, order_id)
            if order is None or order.device_id != token_device:
                raise NotFoundError(f"no order {order_id}")
            if order.delivered_at is not None:
                return order, False
            if order.released_at is not None or self.c.now() >= order.exp:
                raise OrderExpiredError("the order expired before its first delivery; order again")
            return order, True

    def record_delivery(self, order_id: str, token_device: str) -> None:
        """Mark the order delivered (once; its hold can no longer be released as expired). Serialized with
        `release_expired`: an order that expired or was released since `delivery_check` raises
        OrderExpiredError, and the content route then stops its stream before the last segment."""
        with tx.write(self.c.sessions) as session:
            require_device(session, token_device)  # serializes with release_expired
            order = session.get(OrderRow, order_id)
            if order is None or order.device_id != token_device:
                raise NotFoundError(f"no order {order_id}")
            now = self.c.now()
            if order.delivered_at is None:
                if order.released_at is not None or now >= order.exp:
                    raise OrderExpiredError("the order expired before its first delivery; order again")
                order.delivered_at = now
