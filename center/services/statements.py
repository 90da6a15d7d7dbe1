"""Reconciliation (DESIGN.md flow 7): a signed device statement compared with the ledger, stored with its
differences.

The statement must verify under the device's bound payment key, name the token's device, and carry a nonce
this device has not used before (the unique (device, nonce) pair refuses a replay). Compared: the counter
against the highest one the device paid with; the prepaid balance against the wallet's posted balance minus
what the device's outbox orders still hold; the coupons and tickets against the redeemed, unspent ones; each
outbox entry against the order's state at the center. Nothing moves money here.
"""

from __future__ import annotations

import json
import secrets

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from center import ledger
from center.db import tx
from center.db.commerce import CreditRow, OrderRow, PaymentCounter, StatementRow
from center.errors import ConflictError, InvalidSignatureError, WrongDeviceError
from center.services.common import Commerce, require_device
from protocol import jws
from protocol.center_api import Difference, StatementAnswer
from protocol.errors import JwsError
from protocol.keys import public_key_from_jwk
from protocol.messages import Statement


class StatementService:
    def __init__(self, commerce: Commerce) -> None:
        self.c = commerce

    def submit(self, statement_jws: str, token_device: str) -> StatementAnswer:
        try:
            with tx.write(self.c.sessions) as session:
                device = require_device(session, token_device)
                try:
                    payer = public_key_from_jwk(json.loads(device.payment_jwk))
                    statement = jws.verify(statement_jws, Statement, keys=payer, now=self.c.now())
                except (JwsError, ValueError) as exc:
                    raise InvalidSignatureError(
                        "the statement is not signed by this device's payment key"
                    ) from exc
                if statement.device_id != token_device:
                    raise WrongDeviceError("the statement is another device's")
                if session.scalar(
                    select(StatementRow.statement_id).where(
                        StatementRow.device_id == token_device, StatementRow.nonce == statement.nonce
                    )
                ):
                    raise ConflictError("this statement nonce was used before")
                differences = self._compare(session, statement)
                row = StatementRow(
                    statement_id="st_" + secrets.token_urlsafe(12),
                    device_id=token_device,
                    nonce=statement.nonce,
                    counter=statement.counter,
                    statement_jws=statement_jws,
                    differences=json.dumps([d.model_dump() for d in differences]),
                    received_at=self.c.now(),
                )
                session.add(row)
                session.flush()
                return StatementAnswer(
                    statement_id=row.statement_id,
                    device_id=token_device,
                    counter=statement.counter,
                    device_state=device.state,
                    matches=not differences,
                    differences=tuple(differences),
                )
        except IntegrityError as exc:
            raise ConflictError("this statement nonce was used before") from exc

    def _compare(self, session: Session, statement: Statement) -> list[Difference]:
        device_id = statement.device_id
        out: list[Difference] = []
        highest = session.scalar(
            select(func.max(PaymentCounter.counter)).where(PaymentCounter.device_id == device_id)
        )
        if highest is not None and statement.counter < highest:
            out.append(
                Difference(
                    kind="counter-behind",
                    detail="below a counter the device paid with: rolled back, cloned, or an old statement",
                    center=str(highest),
                    device=str(statement.counter),
                )
            )
        outbox = set(statement.outbox)
        orders = {
            o.order_id: o for o in session.scalars(select(OrderRow).where(OrderRow.order_id.in_(outbox)))
        }
        pending_prepaid: dict[str, int] = {}
        for order_id in sorted(outbox):
            order = orders.get(order_id)
            if order is None or order.device_id != device_id:
                out.append(Difference(kind="outbox-unknown", detail=f"no order {order_id} for this device"))
            elif order.paid_at is not None:
                out.append(
                    Difference(kind="outbox-paid", detail=f"{order_id} is paid: give the device its receipt")
                )
            else:
                out.append(
                    Difference(kind="outbox-unpaid", detail=f"{order_id} is unpaid: relay its payment")
                )
                for debit in json.loads(order.planned_debits):
                    if debit["purse"] == "prepaid":
                        pending_prepaid[order.currency] = (
                            pending_prepaid.get(order.currency, 0) + debit["amount"]
                        )
        book = ledger.Ledger(session, self.c.now())
        center_prepaid = {
            b.currency: b.balance - pending_prepaid.get(b.currency, 0)
            for b in book.balances(device_id=device_id)
            if b.kind == "wallet"
        }
        for currency in sorted(set(center_prepaid) | set(statement.purses.prepaid)):
            mine, theirs = center_prepaid.get(currency, 0), statement.purses.prepaid.get(currency, 0)
            if mine != theirs:
                out.append(
                    Difference(
                        kind="prepaid", detail=f"prepaid {currency}", center=str(mine), device=str(theirs)
                    )
                )
        unspent = select(CreditRow.credit_id, CreditRow.kind).where(
            CreditRow.device_id == device_id,
            CreditRow.redeemed_at.is_not(None),
            CreditRow.spent_by.is_(None),
            CreditRow.kind.in_(("coupon", "ticket")),
            CreditRow.exp > statement.iat,
        )
        held = {(kind, credit_id) for credit_id, kind in session.execute(unspent)}
        shown = {("coupon", c.credit_id) for c in statement.purses.coupons} | {
            ("ticket", t.credit_id) for t in statement.purses.tickets
        }
        for kind, credit_id in sorted(held - shown):
            out.append(Difference(kind=f"{kind}-missing", detail=f"{credit_id} is unspent at the center"))
        for kind, credit_id in sorted(shown - held):
            out.append(
                Difference(kind=f"{kind}-unknown", detail=f"{credit_id} is spent or unknown at the center")
            )
        return out
