"""The one pricing rule: the device debits and the center checks payments with it (DESIGN.md "Pricing").

A matching ticket pays everything; otherwise at most one coupon (same currency, earliest `exp`, any leftover
forfeited), then prepaid in the price's currency; if that falls short, nothing is debited.

The debits always add up to the price. A coupon is consumed whole: its debit records the part applied to the
price (min(coupon, price)); the rest is forfeited (docs/protocol.md).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from protocol.errors import PricingShortfall
from protocol.money import Amount, Currency, Money

PurseKind = Literal["prepaid", "coupon", "ticket"]
CreditId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
ItemId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
NumericDate = Annotated[StrictInt, Field(ge=0, le=2**40)]


class Coupon(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    credit_id: CreditId
    amount: Money
    exp: NumericDate


class Ticket(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    credit_id: CreditId
    item_id: ItemId
    exp: NumericDate


class Purses(BaseModel):
    """The device's purses: prepaid balances per currency, coupons and tickets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prepaid: dict[Currency, Amount] = Field(default_factory=dict)
    coupons: tuple[Coupon, ...] = ()
    tickets: tuple[Ticket, ...] = ()


class Debit(BaseModel):
    """One line of a payment: which purse pays how much of the price (in the price's currency)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    purse: PurseKind
    credit_id: CreditId | None = None
    amount: Amount


def debits(price: Money, purses: Purses, item_id: str) -> tuple[Debit, ...]:
    """The debits that pay `price` for `item_id` from `purses`; PricingShortfall, never a partial set."""
    if price.amount == 0:
        return ()
    tickets = sorted((t for t in purses.tickets if t.item_id == item_id), key=lambda t: (t.exp, t.credit_id))
    if tickets:
        return (Debit(purse="ticket", credit_id=tickets[0].credit_id, amount=price.amount),)
    lines: list[Debit] = []
    due = price.amount
    coupons = sorted(
        (c for c in purses.coupons if c.amount.currency == price.currency and c.amount.amount > 0),
        key=lambda c: (c.exp, c.credit_id),
    )
    if coupons:
        applied = min(coupons[0].amount.amount, due)
        lines.append(Debit(purse="coupon", credit_id=coupons[0].credit_id, amount=applied))
        due -= applied
    if due:
        if purses.prepaid.get(price.currency, 0) < due:
            raise PricingShortfall(f"purses cannot pay {price}")
        lines.append(Debit(purse="prepaid", amount=due))
    return tuple(lines)


def apply(purses: Purses, price: Money, lines: tuple[Debit, ...]) -> Purses:
    """The purses after paying `lines` (as computed by `debits`): used tickets and coupons go whole."""
    used = {d.credit_id for d in lines if d.credit_id is not None}
    prepaid = dict(purses.prepaid)
    for line in lines:
        if line.purse == "prepaid":
            left = prepaid.get(price.currency, 0) - line.amount
            if left < 0:
                raise PricingShortfall(f"purses cannot pay {price}")
            prepaid[price.currency] = left
    return Purses(
        prepaid={c: a for c, a in prepaid.items() if a > 0},
        coupons=tuple(c for c in purses.coupons if c.credit_id not in used),
        tickets=tuple(t for t in purses.tickets if t.credit_id not in used),
    )


__all__ = [
    "Coupon",
    "CreditId",
    "Currency",
    "Debit",
    "ItemId",
    "NumericDate",
    "PurseKind",
    "Purses",
    "Ticket",
    "apply",
    "debits",
]
