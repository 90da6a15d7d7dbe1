"""Credits (DESIGN.md flow 6): `center credit issue` makes a one-time code bound to a device (stored as an
HMAC under the data key); `POST /v1/credits/redeem` signs the `coffer-credit` and funds it, once.

Money moves at redemption, in the same transaction that stores the signed credit: prepaid from `cash` into the
device's wallet, a coupon from `promotions` into its own coupon account; a ticket moves nothing until it pays
for its item (then `promotions` pays `revenue`). Redeeming the same code for the same device again answers the
same credit; another device, an unknown code or an expired one is refused with nothing changed.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass

from sqlalchemy import select

from center import ledger
from center.db import tx
from center.db.commerce import CreditRow
from center.errors import InvalidInputError, MessageExpiredError, NotFoundError, WrongDeviceError
from center.sealing import code_hash
from center.services.common import Commerce, require_active, require_device
from protocol.center_api import CreditAnswer, RedeemRequest
from protocol.messages import MAX_CREDIT_LIFETIME, Credit
from protocol.money import MAX_AMOUNT, Money

DAY = 86400
DEFAULT_DAYS = 365


@dataclass(frozen=True)
class NewCredit:
    device_id: str
    kind: str  # prepaid | coupon | ticket
    amount: int | None = None
    currency: str | None = None
    item_id: str | None = None
    expires_days: int = DEFAULT_DAYS

    def validate(self) -> None:
        if self.kind not in ("prepaid", "coupon", "ticket"):
            raise InvalidInputError("a credit is prepaid, coupon or ticket")
        if self.kind == "ticket":
            if not self.item_id or self.amount is not None:
                raise InvalidInputError("a ticket names an item and no amount")
        elif self.amount is None or not 0 < self.amount <= MAX_AMOUNT or self.currency is None:
            raise InvalidInputError(f"a {self.kind} credit needs a positive whole amount and a currency")
        if not 1 <= self.expires_days * DAY <= MAX_CREDIT_LIFETIME:
            raise InvalidInputError("--expires is 1..366 days")


def _answer(row: CreditRow) -> CreditAnswer:
    assert row.credit_jws is not None
    amount = (
        Money(amount=row.amount, currency=row.currency) if row.amount is not None and row.currency else None
    )
    return CreditAnswer(
        credit=row.credit_jws,
        credit_id=row.credit_id,
        device_id=row.device_id,
        kind=row.kind,
        amount=amount,
        item_id=row.item_id,
        exp=row.exp,
    )


class CreditService:
    def __init__(self, commerce: Commerce) -> None:
        self.c = commerce

    def issue(self, new: NewCredit) -> tuple[str, dict[str, object]]:
        """A one-time code for `new` (shown once) and the credit's description."""
        new.validate()
        code = "cc_" + secrets.token_urlsafe(24)
        credit_id = "cr_" + base64.b32encode(secrets.token_bytes(10)).decode("ascii").lower()
        with tx.write(self.c.sessions) as session:
            require_active(require_device(session, new.device_id))
            now = self.c.now()
            row = CreditRow(
                credit_id=credit_id,
                device_id=new.device_id,
                kind=new.kind,
                source="code",
                amount=new.amount,
                currency=new.currency,
                item_id=new.item_id,
                code_hash=code_hash(self.c.keys.data_key, code),
                iat=now,
                exp=now + new.expires_days * DAY,
            )
            session.add(row)
        info: dict[str, object] = {
            "code": code,
            "credit_id": credit_id,
            "device_id": new.device_id,
            "kind": new.kind,
            "amount": None if new.amount is None else {"amount": new.amount, "currency": new.currency},
            "item_id": new.item_id,
            "exp": row.exp,
        }
        return code, info

    def redeem(self, request: RedeemRequest, token_device: str) -> CreditAnswer:
        if request.device_id != token_device:
            raise WrongDeviceError("the code is redeemed for the device whose token is presented")
        digest = code_hash(self.c.keys.data_key, request.code)
        with tx.write(self.c.sessions) as session:
            query = select(CreditRow).where(CreditRow.code_hash == digest).with_for_update()
            row = session.scalars(query).one_or_none()
            if row is None:
                raise NotFoundError("no such credit code")
            if row.device_id != request.device_id:
                raise WrongDeviceError("the credit code belongs to another device")
            device = require_device(session, row.device_id)
            if row.redeemed_at is not None:
                return _answer(row)
            require_active(device)
            now = self.c.now()
            if now >= row.exp:
                raise MessageExpiredError("the credit code has expired")
            row.credit_jws = self.c.sign(
                Credit(
                    iss=self.c.issuer,
                    iat=row.iat,
                    credit_id=row.credit_id,
                    device_id=row.device_id,
                    kind=row.kind,
                    amount=None
                    if row.amount is None
                    else Money(amount=row.amount, currency=row.currency or ""),
                    item_id=row.item_id,
                    exp=row.exp,
                )
            )
            row.redeemed_at = now
            self._fund(ledger.Ledger(session, now), row)
            session.flush()
            return _answer(row)

    @staticmethod
    def _fund(book: ledger.Ledger, row: CreditRow) -> None:
        if row.kind == "ticket" or row.amount is None or row.currency is None:
            return
        currency = row.currency
        book.open_house_accounts(currency)
        if row.kind == "prepaid":
            source = ledger.cash(currency)
            target = book.open_account(
                ledger.wallet(row.device_id, currency), "wallet", currency, row.device_id
            )
        else:
            source = ledger.promotions(currency)
            target = book.open_account(ledger.coupon(row.credit_id), "coupon", currency, row.device_id)
        txn = f"fund:{row.credit_id}"
        book.post(txn, "fund", [ledger.Leg(txn, source, target, row.amount, currency)])
