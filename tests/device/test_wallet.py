"""Wallet rules on plain data (unit tier): a fake counter and software keys stand in below the interface.

The same operations run against the real TPM, with every message from the real center, in
test_device_swtpm.py. Here the center is the forger (tests/support/forger.py): the real center enrolls only a
device whose keys swtpm attests, and these tests choose iat, exp and ids (a time floor raised to a given
instant, a credit id reused after its expiry, an order expired before it is sent), which the real center never
signs on demand. Orders use 4 KiB segments so that the 7000-byte chunks cross segment boundaries.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from device_os.core.answers import PurchaseAnswer
from device_os.core.purchase import StagedContent
from device_os.core.wallet import Wallet
from device_os.errors import (
    AlreadyOwned,
    ContentMismatch,
    CorruptContent,
    CreditAlreadyApplied,
    InsufficientFunds,
    InvalidMessage,
    InvalidReceipt,
    Locked,
    MessageExpired,
    NotEnrolled,
    NotFound,
    OrderSettled,
    UnknownOrder,
    UntrustedKeyset,
    WrongDevice,
)
from protocol import jws
from protocol.messages import Payment, Statement, message_hash
from protocol.money import Money
from tests.device.fakes import SoftDevice, chunks
from tests.support.forger import DAY, T0, Forger

CONTENT = b"the quick brown fox " * 1000
SEGMENT = 4096


@pytest.fixture
def center() -> Forger:
    """The center of these unit tests: a forger with keys of its own."""
    return Forger()


@pytest.fixture
def dev(tmp_path: Path, center: Forger) -> SoftDevice:
    d = SoftDevice(tmp_path)
    d.wallet.accept_enrollment(center.enrollment(d.device_id), center.root_jwk)
    return d


def make_order(
    center: Forger, device_id: str, kem: Any, item: str, price: int, content: bytes = CONTENT, **kw: Any
) -> tuple[str, bytes]:
    """An order for `item` at `price` and its content stream (4 KiB segments unless `segment_size`)."""
    kw.setdefault("segment_size", SEGMENT)
    return center.order_for(device_id, kem, content, item_id=item, price=price, **kw)


def buy(dev: SoftDevice, center: Forger, item: str, price: int, **kw: Any) -> tuple[str, PurchaseAnswer]:
    token, stream_bytes = make_order(center, dev.device_id, dev.kem.public_key(), item, price, **kw)
    return token, dev.wallet.purchase(token, chunks(stream_bytes))


def paid(center: Forger, dev: SoftDevice, answer: PurchaseAnswer) -> tuple[str, Payment]:
    """The payment of `answer` as the center opens it, verified with the device's payment key."""
    token = center.open_payment(answer.order_id, answer.payment)
    return token, jws.verify(token, Payment, keys=dev.payer_key.public_key(), now=0)


def test_not_enrolled_refuses_credits(tmp_path: Path, center: Forger) -> None:
    d = SoftDevice(tmp_path)
    with pytest.raises(NotEnrolled):
        d.wallet.apply_credit(center.credit(d.device_id))


def test_enrollment_pins_root(tmp_path: Path, center: Forger) -> None:
    d = SoftDevice(tmp_path)
    other = Forger()
    with pytest.raises(WrongDevice):
        d.wallet.accept_enrollment(center.enrollment("dev_" + "b" * 32), center.root_jwk)
    with pytest.raises(UntrustedKeyset):  # keyset signed by another root than the one offered
        d.wallet.accept_enrollment(center.enrollment(d.device_id), other.root_jwk)
    record = d.wallet.accept_enrollment(center.enrollment(d.device_id), center.root_jwk)
    assert d.wallet.accept_enrollment(record.enrollment, center.root_jwk) == record  # idempotent
    snap = d.snapshot()
    with pytest.raises(UntrustedKeyset):  # pinned on first use
        d.wallet.accept_enrollment(other.enrollment(d.device_id), other.root_jwk)
    assert d.snapshot() == snap
    assert d.reload().body.enrollment == record
    assert d.wallet.view().time_floor == T0


def test_pinned_root_from_settings(tmp_path: Path, center: Forger) -> None:
    from protocol.keys import root_fingerprint

    d = SoftDevice(tmp_path)
    w = Wallet(d.session, d.wallet.body, pinned_root=root_fingerprint(Forger().root.public_key()))
    with pytest.raises(UntrustedKeyset):
        w.accept_enrollment(center.enrollment(d.device_id), center.root_jwk)


def test_no_pinned_root_and_no_trust_on_first_use_refuses(tmp_path: Path, center: Forger) -> None:
    d = SoftDevice(tmp_path)
    snap = d.snapshot()
    w = Wallet(d.session, d.wallet.body)  # the product default: trust_first_center=False
    with pytest.raises(UntrustedKeyset, match="TRUST_FIRST_CENTER"):
        w.accept_enrollment(center.enrollment(d.device_id), center.root_jwk)
    assert d.snapshot() == snap
    record = Wallet(d.session, d.wallet.body, trust_first_center=True).accept_enrollment(
        center.enrollment(d.device_id), center.root_jwk
    )
    from protocol.keys import root_fingerprint

    assert record.root_fingerprint == root_fingerprint(center.root.public_key())


def test_credit_once_and_kinds(dev: SoftDevice, center: Forger) -> None:
    token = center.credit(dev.device_id, amount=500)
    answer = dev.wallet.apply_credit(token)
    assert answer.counter == dev.counter.value
    snap = dev.snapshot()
    with pytest.raises(CreditAlreadyApplied):
        dev.wallet.apply_credit(token)
    assert dev.snapshot() == snap
    dev.wallet.apply_credit(center.credit(dev.device_id, 300, kind="coupon"))
    dev.wallet.apply_credit(center.credit(dev.device_id, None, kind="ticket", item_id="song"))
    dev.wallet.apply_credit(center.credit(dev.device_id, amount=7, currency="USD"))
    purses = dev.reload().body.purses
    assert purses.prepaid == {"JPY": 500, "USD": 7}
    assert [c.amount.amount for c in purses.coupons] == [300]
    assert [t.item_id for t in purses.tickets] == ["song"]


def test_credit_checks(dev: SoftDevice, center: Forger) -> None:
    snap = dev.snapshot()
    with pytest.raises(WrongDevice):
        dev.wallet.apply_credit(center.credit("dev_" + "c" * 32))
    with pytest.raises(InvalidMessage):
        dev.wallet.apply_credit(Forger().credit(dev.device_id))  # signed by another center
    with pytest.raises(InvalidMessage):
        dev.wallet.apply_credit("not.a.jws")
    assert dev.snapshot() == snap
    # time floor: a message with a later iat raises it; an earlier credit expiring before it is refused
    dev.wallet.apply_credit(center.credit(dev.device_id, iat=T0 + 10 * DAY))
    assert dev.wallet.view().time_floor == T0 + 10 * DAY
    with pytest.raises(MessageExpired):
        dev.wallet.apply_credit(center.credit(dev.device_id, iat=T0, exp=T0 + 5 * DAY))


def test_spent_ids_pruned_after_expiry(dev: SoftDevice, center: Forger) -> None:
    dev.wallet.apply_credit(center.credit(dev.device_id, credit_id="old", iat=T0, exp=T0 + DAY))
    assert "old" in dev.wallet.body.spent_credits
    dev.wallet.apply_credit(center.credit(dev.device_id, iat=T0 + 2 * DAY))
    assert "old" not in dev.wallet.body.spent_credits
    with pytest.raises(MessageExpired):  # and it can never verify again
        dev.wallet.apply_credit(center.credit(dev.device_id, credit_id="old", iat=T0, exp=T0 + DAY))


def test_purchase_prepaid_and_payment(dev: SoftDevice, center: Forger) -> None:
    dev.wallet.apply_credit(center.credit(dev.device_id, amount=1000))
    c0 = dev.counter.value
    order, answer = buy(dev, center, "book", 300)
    assert answer.counter == c0 + 1 == dev.counter.value
    _, payment = paid(center, dev, answer)
    assert payment.order_hash == message_hash(order)
    assert payment.counter == answer.counter
    assert payment.iat == dev.wallet.body.time_floor
    assert payment.iss == payment.device_id == dev.device_id
    assert [(d.purse, d.amount) for d in payment.debits] == [("prepaid", 300)]
    w = dev.reload()
    assert w.body.purses.prepaid == {"JPY": 700}
    assert b"".join(w.open_item("book")) == CONTENT
    assert b"".join(w.read_range("book", 10, 30)) == CONTENT[10:40]
    assert list(w.body.outbox) == [answer.order_id]
    # the same order again: the same answer, no second debit, no new blob
    snap = dev.snapshot()
    assert buy_again(dev, order) == answer
    assert dev.snapshot() == snap


def buy_again(dev: SoftDevice, order: str) -> PurchaseAnswer:
    return dev.wallet.purchase(order, [b"ignored: the stored answer comes first"])


def test_purchase_coupon_ticket_and_refusals(dev: SoftDevice, center: Forger) -> None:
    dev.wallet.apply_credit(center.credit(dev.device_id, amount=250))
    dev.wallet.apply_credit(center.credit(dev.device_id, 100, kind="coupon", credit_id="cp1"))
    dev.wallet.apply_credit(
        center.credit(dev.device_id, None, kind="ticket", item_id="song", credit_id="tk1")
    )
    _, a = buy(dev, center, "song", 999)
    _, b = buy(dev, center, "film", 300)
    payments = [paid(center, dev, x)[1] for x in (a, b)]
    assert [(d.purse, d.credit_id, d.amount) for d in payments[0].debits] == [("ticket", "tk1", 999)]
    assert [(d.purse, d.amount) for d in payments[1].debits] == [("coupon", 100), ("prepaid", 200)]
    assert dev.wallet.body.purses.prepaid == {"JPY": 50}
    snap = dev.snapshot()
    with pytest.raises(InsufficientFunds):
        buy(dev, center, "poster", 51)
    with pytest.raises(AlreadyOwned):
        buy(dev, center, "film", 1)
    with pytest.raises(MessageExpired):
        buy(dev, center, "mug", 1, iat=T0 - 2 * DAY, exp=T0 - DAY)
    order, s = make_order(center, "dev_" + "d" * 32, dev.kem.public_key(), "x", 1, CONTENT)
    with pytest.raises(WrongDevice):
        dev.wallet.purchase(order, chunks(s))
    assert dev.snapshot() == snap


def test_content_checks_leave_nothing(dev: SoftDevice, center: Forger) -> None:
    dev.wallet.apply_credit(center.credit(dev.device_id, amount=1000))
    snap = dev.snapshot()
    order, s = make_order(center, dev.device_id, dev.kem.public_key(), "doc", 10, CONTENT)
    with pytest.raises(CorruptContent):
        dev.wallet.purchase(order, chunks(s[:-5]))
    bad = bytearray(s)
    bad[100] ^= 1
    with pytest.raises(CorruptContent):
        dev.wallet.purchase(order, chunks(bytes(bad)))
    _other, s2 = make_order(center, dev.device_id, dev.kem.public_key(), "doc", 10, CONTENT + b"!")
    with pytest.raises((CorruptContent, ContentMismatch)):
        dev.wallet.purchase(order, chunks(s2))  # another order's stream (another Ke)
    lying, s3 = make_order(center, dev.device_id, dev.kem.public_key(), "doc", 10, CONTENT)
    staged = dev.wallet.stage(dev.wallet.verify_order(lying), chunks(s3))
    with pytest.raises(ContentMismatch):
        dev.wallet.commit_purchase(order, staged)  # staged for another order
    assert dev.snapshot() == snap


def test_deferred_mode(dev: SoftDevice, center: Forger) -> None:
    dev.wallet.apply_credit(center.credit(dev.device_id, amount=1000))
    order, s = make_order(
        center, dev.device_id, dev.kem.public_key(), "clip", 10, CONTENT, aead="chacha20-poly1305"
    )
    dev.wallet.purchase(order, chunks(s), mode="deferred")
    entry = dev.wallet.body.library["clip"]
    assert entry.mode == "deferred"
    assert entry.wrapped_key
    assert dev.content.path(entry.blob).read_bytes() == s  # the center's stream, as received
    c = dev.counter.value
    assert b"".join(dev.wallet.open_item("clip")) == CONTENT
    assert dev.counter.value == c + 1  # the first open re-encrypts under the DEK in one commit
    entry2 = dev.reload().body.library["clip"]
    assert entry2.mode == "now"
    assert entry2.wrapped_key is None
    assert dev.content.blob_ids() == {entry2.blob}
    assert b"".join(dev.wallet.open_item("clip")) == CONTENT
    assert dev.counter.value == c + 1


def test_receipt_clears_outbox(dev: SoftDevice, center: Forger) -> None:
    dev.wallet.apply_credit(center.credit(dev.device_id, amount=1000))
    order, a = buy(dev, center, "book", 100)
    _, b = buy(dev, center, "pen", 100)
    with pytest.raises(InvalidReceipt):  # names another payment
        dev.wallet.apply_receipt(center.receipt(dev.device_id, a.order_id, "A" * 43))
    receipt = center.receipt_for_payment(dev.device_id, a.order_id, a.payment)
    dev.wallet.apply_receipt(receipt)
    assert list(dev.wallet.body.outbox) == [b.order_id]
    c = dev.counter.value
    dev.wallet.apply_receipt(receipt)  # idempotent, no commit
    assert dev.counter.value == c
    with pytest.raises(OrderSettled):
        dev.wallet.purchase(order, [b""])
    with pytest.raises(UnknownOrder):
        dev.wallet.apply_receipt(center.receipt(dev.device_id, "nope", "A" * 43))


def test_settled_orders_are_dropped_once_they_expire(dev: SoftDevice, center: Forger) -> None:
    """The state stays bounded: a settled order is kept while it could still verify (exp > time floor)."""
    dev.wallet.apply_credit(center.credit(dev.device_id, amount=1000))
    order, a = buy(dev, center, "book", 100)
    _, b = buy(dev, center, "pen", 100, exp=T0 + 30 * DAY)
    dev.wallet.apply_receipt(center.receipt_for_payment(dev.device_id, a.order_id, a.payment))
    dev.wallet.apply_receipt(center.receipt_for_payment(dev.device_id, b.order_id, b.payment))
    settled = dev.wallet.body.settled
    assert set(settled) == {a.order_id, b.order_id}
    exp = settled[a.order_id].order_exp
    assert exp < settled[b.order_id].order_exp
    # A later center message raises the time floor to the first order's exp: its entry goes, the other stays.
    dev.wallet.apply_credit(center.credit(dev.device_id, amount=5, iat=exp))
    body = dev.wallet.body
    assert body.time_floor == exp
    assert set(body.settled) == {b.order_id}
    # The dropped order posted again is refused as expired, and nothing is debited.
    counter, purses = dev.counter.value, body.purses
    with pytest.raises(MessageExpired):
        dev.wallet.purchase(order, [b""])
    assert dev.counter.value == counter
    assert dev.wallet.body.purses == purses


def test_statement(dev: SoftDevice, center: Forger) -> None:
    dev.wallet.apply_credit(center.credit(dev.device_id, amount=1000))
    _, a = buy(dev, center, "book", 100)
    token = dev.wallet.statement("n" * 24)
    st = jws.verify(token, Statement, keys=dev.payer_key.public_key(), now=0)
    assert st.counter == dev.counter.value
    assert st.outbox == (a.order_id,)
    assert st.purses.prepaid == {"JPY": 900}
    assert st.nonce == "n" * 24


def test_library_delete(dev: SoftDevice, center: Forger) -> None:
    dev.wallet.apply_credit(center.credit(dev.device_id, amount=1000))
    buy(dev, center, "book", 100)
    dev.wallet.delete_item("book")
    assert dev.content.blob_ids() == set()
    assert "book" not in dev.reload().body.library
    with pytest.raises(NotFound):
        dev.wallet.delete_item("book")
    _, again = buy(dev, center, "book", 100)  # may buy it again once deleted
    assert again is not None


def test_repurchase_replaces_blob(dev: SoftDevice, center: Forger) -> None:
    dev.wallet.apply_credit(center.credit(dev.device_id, amount=1000))
    buy(dev, center, "book", 100)
    old = dev.wallet.body.library["book"].blob
    order, s = make_order(center, dev.device_id, dev.kem.public_key(), "book", 100, CONTENT)
    dev.wallet.purchase(order, chunks(s), repurchase=True)
    new = dev.wallet.body.library["book"].blob
    assert new != old
    assert dev.content.blob_ids() == {new}
    assert dev.wallet.body.purses.prepaid == {"JPY": 800}


def stage_signing_ahead(dev: SoftDevice, center: Forger) -> tuple[str, StagedContent, str]:
    """1000 JPY of credit, a 300 JPY order staged with its payment signed ahead: (order, staged, that JWS)."""
    dev.wallet.apply_credit(center.credit(dev.device_id, amount=1000))
    order, s = make_order(center, dev.device_id, dev.kem.public_key(), "book", 300, CONTENT)
    staged = dev.wallet.stage(dev.wallet.verify_order(order), chunks(s), order_jws=order)
    assert staged.ahead is not None
    ahead = staged.ahead.result_for(staged.ahead.payment)
    assert ahead is not None
    return order, staged, ahead


def test_the_payment_signed_ahead_is_the_one_committed(dev: SoftDevice, center: Forger) -> None:
    order, staged, ahead = stage_signing_ahead(dev, center)
    answer = dev.wallet.commit_purchase(order, staged)
    token, payment = paid(center, dev, answer)
    assert token == ahead
    assert payment.counter == answer.counter == dev.counter.value
    assert payment.iat == dev.wallet.body.time_floor
    assert [(d.purse, d.amount) for d in payment.debits] == [("prepaid", 300)]


def test_a_commit_in_between_makes_the_commit_sign_again(dev: SoftDevice, center: Forger) -> None:
    order, staged, ahead = stage_signing_ahead(dev, center)
    dev.wallet.apply_credit(center.credit(dev.device_id, amount=50, credit_id="late"))  # the counter moves
    answer = dev.wallet.commit_purchase(order, staged)
    token, payment = paid(center, dev, answer)
    assert token != ahead
    assert staged.ahead is not None
    assert payment.counter == answer.counter == staged.ahead.payment.counter + 1 == dev.counter.value
    assert dev.wallet.body.purses.prepaid == {"JPY": 750}


def test_a_failed_sign_ahead_is_signed_again_at_the_commit(
    dev: SoftDevice, center: Forger, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_sign = jws.sign
    calls: list[str] = []

    def flaky(payload: Any, signer: Any) -> str:  # the first Sign (the one ahead) fails, as a TPM error would
        calls.append(type(payload).__name__)
        if len(calls) == 1:
            raise RuntimeError("TPM busy")
        return real_sign(payload, signer)

    dev.wallet.apply_credit(center.credit(dev.device_id, amount=1000))
    order, s = make_order(center, dev.device_id, dev.kem.public_key(), "book", 300, CONTENT)
    monkeypatch.setattr(jws, "sign", flaky)
    staged = dev.wallet.stage(dev.wallet.verify_order(order), chunks(s), order_jws=order)
    assert staged.ahead is not None
    assert staged.ahead.result_for(staged.ahead.payment) is None
    answer = dev.wallet.commit_purchase(order, staged)
    assert calls == ["Payment", "Payment"]
    assert paid(center, dev, answer)[1].counter == answer.counter == dev.counter.value


def test_no_payment_is_signed_ahead_for_an_order_that_cannot_be_paid(dev: SoftDevice, center: Forger) -> None:
    dev.wallet.apply_credit(center.credit(dev.device_id, amount=100))
    order, s = make_order(center, dev.device_id, dev.kem.public_key(), "book", 100, CONTENT)
    verified = dev.wallet.verify_order(order)
    buy(dev, center, "other", 100)  # the balance goes while the content streams
    snap = dev.snapshot()
    staged = dev.wallet.stage(verified, chunks(s), order_jws=order)
    assert staged.ahead is None
    with pytest.raises(InsufficientFunds):
        dev.wallet.commit_purchase(order, staged)
    assert dev.snapshot() == snap


def test_race_for_the_last_of_the_balance(dev: SoftDevice, center: Forger) -> None:
    dev.wallet.apply_credit(center.credit(dev.device_id, amount=100))
    orders = [
        make_order(center, dev.device_id, dev.kem.public_key(), f"item{i}", 100, CONTENT) for i in range(2)
    ]
    # both sign ahead a payment with the same counter: only the winner's is used, the loser refuses
    staged = [dev.wallet.stage(dev.wallet.verify_order(o), chunks(s), order_jws=o) for o, s in orders]
    barrier = threading.Barrier(2)
    results: list[object] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results.append(dev.wallet.commit_purchase(orders[i][0], staged[i]))
        except InsufficientFunds as exc:
            results.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(isinstance(r, InsufficientFunds) for r in results) == 1
    assert dev.wallet.body.purses.prepaid == {}
    assert len(dev.wallet.body.library) == 1
    assert dev.content.blob_ids() == {e.blob for e in dev.wallet.body.library.values()}


def test_money_model_is_exact(dev: SoftDevice, center: Forger) -> None:
    # prepaid in several currencies; price in USD never touches JPY
    dev.wallet.apply_credit(center.credit(dev.device_id, amount=500, currency="USD"))
    dev.wallet.apply_credit(center.credit(dev.device_id, amount=500))
    _, a = buy(dev, center, "x", 120, currency="USD")
    assert dev.wallet.body.purses.prepaid == {"USD": 380, "JPY": 500}
    assert dev.wallet.body.outbox[a.order_id].price == Money(amount=120, currency="USD")


def test_lock_during_a_purchase_commits_nothing(dev: SoftDevice, center: Forger) -> None:
    dev.wallet.apply_credit(center.credit(dev.device_id, amount=1000))
    order, s = make_order(center, dev.device_id, dev.kem.public_key(), "book", 100, CONTENT)
    snap = dev.snapshot()
    staged = dev.wallet.stage(dev.wallet.verify_order(order), chunks(s))
    dev.wallet.close()  # Device.lock() while the content was streaming
    with pytest.raises(Locked):
        dev.wallet.commit_purchase(order, staged)
    assert dev.snapshot() == snap
    with pytest.raises(Locked):
        dev.wallet.statement("n" * 24)
