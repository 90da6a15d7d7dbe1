"""The one pricing rule (DESIGN.md "Pricing"), checked against a straight-line reference written here.

A matching ticket pays everything (earliest exp, then credit_id); otherwise at most one coupon (same
currency, earliest exp, then credit_id; any leftover forfeited), then prepaid in the price's currency; if that
falls short, PricingShortfall and nothing is debited. Coupons worth 0 are never chosen (they pay nothing).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from protocol.errors import PricingShortfall
from protocol.money import MAX_AMOUNT, Money
from protocol.pricing import Coupon, Debit, Purses, Ticket, apply, debits

CURRENCIES = ["JPY", "USD", "EUR"]
ITEMS = ["item_a", "item_b", "item_c"]


# --- the reference --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    purse: str
    credit_id: str | None
    amount: int


def reference(price: Money, purses: Purses, item_id: str) -> list[Line] | None:
    """DESIGN.md's rule, one step at a time; None means insufficient funds."""
    if price.amount == 0:
        return []
    best_ticket: Ticket | None = None
    for ticket in purses.tickets:
        if ticket.item_id != item_id:
            continue
        if best_ticket is None or (ticket.exp, ticket.credit_id) < (best_ticket.exp, best_ticket.credit_id):
            best_ticket = ticket
    if best_ticket is not None:
        return [Line("ticket", best_ticket.credit_id, price.amount)]
    best_coupon: Coupon | None = None
    for coupon in purses.coupons:
        if coupon.amount.currency != price.currency or coupon.amount.amount == 0:
            continue
        if best_coupon is None or (coupon.exp, coupon.credit_id) < (best_coupon.exp, best_coupon.credit_id):
            best_coupon = coupon
    lines = []
    due = price.amount
    if best_coupon is not None:
        used = min(best_coupon.amount.amount, due)
        lines.append(Line("coupon", best_coupon.credit_id, used))
        due = due - used
    if due > 0:
        balance = purses.prepaid.get(price.currency, 0)
        if balance < due:
            return None
        lines.append(Line("prepaid", None, due))
    return lines


def as_lines(result: tuple[Debit, ...]) -> list[Line]:
    return [Line(d.purse, d.credit_id, d.amount) for d in result]


# --- strategies -----------------------------------------------------------------------------------

small_amounts = st.one_of(st.integers(0, 1000), st.integers(0, MAX_AMOUNT))
exps = st.integers(0, 5)  # few distinct values: ties exercise the credit_id tie-break


@st.composite
def purses_strategy(draw: st.DrawFn) -> Purses:
    prepaid = draw(st.dictionaries(st.sampled_from(CURRENCIES), small_amounts, max_size=3))
    ids = draw(st.lists(st.text("abc123", min_size=1, max_size=3), unique=True, max_size=8))
    coupons: list[Coupon] = []
    tickets: list[Ticket] = []
    for credit_id in ids:
        if draw(st.booleans()):
            amount = Money(amount=draw(small_amounts), currency=draw(st.sampled_from(CURRENCIES)))
            coupons.append(Coupon(credit_id=credit_id, amount=amount, exp=draw(exps)))
        else:
            tickets.append(Ticket(credit_id=credit_id, item_id=draw(st.sampled_from(ITEMS)), exp=draw(exps)))
    return Purses(prepaid=prepaid, coupons=tuple(coupons), tickets=tuple(tickets))


prices = st.builds(Money, amount=small_amounts, currency=st.sampled_from(CURRENCIES))
item_ids = st.sampled_from([*ITEMS, "item_other"])


def coupon_value(purses: Purses, currency: str) -> int:
    return sum(c.amount.amount for c in purses.coupons if c.amount.currency == currency)


# --- properties -----------------------------------------------------------------------------------


@settings(max_examples=200)
@given(price=prices, purses=purses_strategy(), item_id=item_ids)
def test_debits_equal_the_reference(price: Money, purses: Purses, item_id: str) -> None:
    expected = reference(price, purses, item_id)
    if expected is None:
        with pytest.raises(PricingShortfall):
            debits(price, purses, item_id)
    else:
        assert as_lines(debits(price, purses, item_id)) == expected


@settings(max_examples=150)
@given(price=prices, purses=purses_strategy(), item_id=item_ids, seed=st.integers())
def test_order_of_purses_does_not_matter(price: Money, purses: Purses, item_id: str, seed: int) -> None:
    rng = random.Random(seed)
    shuffled = Purses(
        prepaid=purses.prepaid,
        coupons=tuple(rng.sample(purses.coupons, len(purses.coupons))),
        tickets=tuple(rng.sample(purses.tickets, len(purses.tickets))),
    )
    try:
        first = debits(price, purses, item_id)
    except PricingShortfall:
        with pytest.raises(PricingShortfall):
            debits(price, shuffled, item_id)
    else:
        assert debits(price, shuffled, item_id) == first


@settings(max_examples=200)
@given(price=prices, purses=purses_strategy(), item_id=item_ids)
def test_shape_of_a_payment(price: Money, purses: Purses, item_id: str) -> None:
    try:
        lines = debits(price, purses, item_id)
    except PricingShortfall:
        return
    assert sum(d.amount for d in lines) == price.amount
    assert all(d.amount > 0 for d in lines)
    kinds = [d.purse for d in lines]
    assert kinds.count("coupon") <= 1
    assert kinds.count("prepaid") <= 1
    assert kinds in ([], ["ticket"], ["coupon"], ["prepaid"], ["coupon", "prepaid"])
    tickets = {t.credit_id: t for t in purses.tickets}
    coupons = {c.credit_id: c for c in purses.coupons}
    for d in lines:
        if d.purse == "ticket":
            assert tickets[d.credit_id or ""].item_id == item_id
        elif d.purse == "coupon":
            coupon = coupons[d.credit_id or ""]
            assert coupon.amount.currency == price.currency
            assert 0 < d.amount <= coupon.amount.amount
        else:
            assert d.credit_id is None
            assert d.amount <= purses.prepaid.get(price.currency, 0)
    if any(t.item_id == item_id for t in purses.tickets) and price.amount:
        assert kinds == ["ticket"]
    else:
        assert "ticket" not in kinds


@settings(max_examples=200)
@given(price=prices, purses=purses_strategy(), item_id=item_ids)
def test_apply_conserves_value(price: Money, purses: Purses, item_id: str) -> None:
    """before = after + sum(debits) + forfeited coupon leftover (price's currency); the rest untouched."""
    try:
        lines = debits(price, purses, item_id)
    except PricingShortfall:
        return
    after = apply(purses, price, lines)
    cur = price.currency
    paid = sum(d.amount for d in lines if d.purse != "ticket")
    coupon_ids = {d.credit_id for d in lines if d.purse == "coupon"}
    forfeited = sum(c.amount.amount for c in purses.coupons if c.credit_id in coupon_ids) - sum(
        d.amount for d in lines if d.purse == "coupon"
    )
    assert forfeited >= 0
    before_value = purses.prepaid.get(cur, 0) + coupon_value(purses, cur)
    after_value = after.prepaid.get(cur, 0) + coupon_value(after, cur)
    assert before_value == after_value + paid + forfeited
    for other in CURRENCIES:
        if other != cur:
            assert after.prepaid.get(other, 0) == purses.prepaid.get(other, 0)
            assert [c for c in after.coupons if c.amount.currency == other] == [
                c for c in purses.coupons if c.amount.currency == other
            ]
    # exactly the used credits are gone, whole
    used = {d.credit_id for d in lines if d.credit_id is not None}
    assert {c.credit_id for c in after.coupons} == {c.credit_id for c in purses.coupons} - used
    assert {t.credit_id for t in after.tickets} == {t.credit_id for t in purses.tickets} - used
    if lines and lines[0].purse == "ticket":
        assert after.prepaid.items() <= purses.prepaid.items()
        assert after.coupons == purses.coupons


@settings(max_examples=200)
@given(price=prices, purses=purses_strategy(), item_id=item_ids)
def test_insufficient_means_nothing_to_apply(price: Money, purses: Purses, item_id: str) -> None:
    """Short funds raise before any line exists, so apply() is never reached and the purses stay as they were.

    Oracle independent of the rule's order of steps: short iff no matching ticket and the best same-currency
    coupon plus the prepaid balance is below the price.
    """
    if price.amount == 0 or any(t.item_id == item_id for t in purses.tickets):
        short = False
    else:
        usable = [c for c in purses.coupons if c.amount.currency == price.currency and c.amount.amount > 0]
        best = min(usable, key=lambda c: (c.exp, c.credit_id), default=None)
        short = (best.amount.amount if best else 0) + purses.prepaid.get(price.currency, 0) < price.amount
    snapshot = purses.model_dump()
    if short:
        with pytest.raises(PricingShortfall):
            debits(price, purses, item_id)
    else:
        assert sum(d.amount for d in debits(price, purses, item_id)) == price.amount
    assert purses.model_dump() == snapshot


@given(purses=purses_strategy(), item_id=item_ids, currency=st.sampled_from(CURRENCIES))
def test_price_zero_debits_nothing(purses: Purses, item_id: str, currency: str) -> None:
    price = Money(amount=0, currency=currency)
    assert debits(price, purses, item_id) == ()
    assert apply(purses, price, ()).prepaid == {c: a for c, a in purses.prepaid.items() if a > 0}
    assert apply(purses, price, ()).coupons == purses.coupons
    assert apply(purses, price, ()).tickets == purses.tickets


@given(price=prices, purses=purses_strategy(), item_id=item_ids)
def test_apply_refuses_a_prepaid_line_beyond_the_balance(price: Money, purses: Purses, item_id: str) -> None:
    assume(price.amount > purses.prepaid.get(price.currency, 0))
    with pytest.raises(PricingShortfall):
        apply(purses, price, (Debit(purse="prepaid", amount=price.amount),))


# --- examples -------------------------------------------------------------------------------------

JPY = "JPY"


def jpy(amount: int) -> Money:
    return Money(amount=amount, currency=JPY)


def test_earliest_ticket_wins_then_credit_id() -> None:
    purses = Purses(
        prepaid={JPY: 10_000},
        coupons=(Coupon(credit_id="c", amount=jpy(100), exp=1),),
        tickets=(
            Ticket(credit_id="t9", item_id="x", exp=5),
            Ticket(credit_id="t2", item_id="x", exp=3),
            Ticket(credit_id="t1", item_id="x", exp=3),
            Ticket(credit_id="t0", item_id="y", exp=0),
        ),
    )
    assert debits(jpy(700), purses, "x") == (Debit(purse="ticket", credit_id="t1", amount=700),)
    after = apply(purses, jpy(700), debits(jpy(700), purses, "x"))
    assert [t.credit_id for t in after.tickets] == ["t9", "t2", "t0"]
    assert after.prepaid == {JPY: 10_000}
    assert after.coupons == purses.coupons


def test_coupon_leftover_is_forfeited() -> None:
    purses = Purses(prepaid={JPY: 50}, coupons=(Coupon(credit_id="c", amount=jpy(1000), exp=1),))
    lines = debits(jpy(300), purses, "x")
    assert lines == (Debit(purse="coupon", credit_id="c", amount=300),)
    assert apply(purses, jpy(300), lines) == Purses(prepaid={JPY: 50})


def test_only_one_coupon_then_prepaid() -> None:
    purses = Purses(
        prepaid={JPY: 1000, "USD": 1000},
        coupons=(
            Coupon(credit_id="late", amount=jpy(500), exp=9),
            Coupon(credit_id="early", amount=jpy(100), exp=2),
            Coupon(credit_id="usd", amount=Money(amount=999, currency="USD"), exp=0),
            Coupon(credit_id="zero", amount=jpy(0), exp=0),
        ),
    )
    lines = debits(jpy(400), purses, "x")
    assert lines == (Debit(purse="coupon", credit_id="early", amount=100), Debit(purse="prepaid", amount=300))
    after = apply(purses, jpy(400), lines)
    assert after.prepaid == {JPY: 700, "USD": 1000}
    assert [c.credit_id for c in after.coupons] == ["late", "usd", "zero"]


def test_short_by_one_debits_nothing() -> None:
    purses = Purses(
        prepaid={JPY: 299, "USD": 10_000}, coupons=(Coupon(credit_id="c", amount=jpy(100), exp=1),)
    )
    assert debits(jpy(399), purses, "x")
    with pytest.raises(PricingShortfall):
        debits(jpy(400), purses, "x")


def test_ticket_for_another_item_is_not_used() -> None:
    purses = Purses(tickets=(Ticket(credit_id="t", item_id="other", exp=1),))
    with pytest.raises(PricingShortfall):
        debits(jpy(1), purses, "x")
