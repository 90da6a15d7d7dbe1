"""Group commit on SQLite (center.db.group): operations queued together share one transaction and one fsync,
yet each commits entirely or not at all and is answered only after the shared commit.

A batch is made deterministic, not timed: a first operation blocks inside its transaction until the others
have queued behind it, so they all run in the next batch."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from center import ledger
from center.db.commerce import LedgerTxn
from center.db.engine import make_engine, session_factory
from center.db.group import ON_DURABLE, GroupCommit
from center.errors import DatabaseUnavailableError, InsufficientFundsError
from center.services.catalog import CatalogService
from center.settings import CenterSettings
from protocol.center_api import OrderRequest
from tests.center.commerce import Center, problem
from tests.center.conftest import add, catalog_for

PRICE = 300
WAIT = 30.0  # seconds: a bound for a thread to queue, never a measured time


class Batch:
    """Runs `first` as a batch of its own that holds the lead until `waiting` more operations queued behind
    it; those then run as one batch."""

    def __init__(self, group: GroupCommit, pool: ThreadPoolExecutor) -> None:
        self.group, self.pool = group, pool
        self.release = threading.Event()
        self.started = threading.Event()  # the first operation runs (it left the queue)

    def hold(self) -> Future[None]:
        def first(session: Session) -> None:
            self.started.set()
            assert self.release.wait(WAIT)

        return self.pool.submit(self.group.run, first)

    def queue(self, works: list[Callable[[Session], Any]]) -> list[Future[Any]]:
        """`works` submitted one by one, each only once the one before is in the queue: the batch runs them
        in this order."""
        futures: list[Future[Any]] = []
        for work in works:
            futures.append(self.pool.submit(self.group.run, work))
            for _ in range(int(WAIT * 100)):
                if len(self.group._queue) == len(futures):
                    break
                threading.Event().wait(0.01)
        return futures

    def let_go(self, waiting: int) -> None:
        for _ in range(int(WAIT * 100)):
            if len(self.group._queue) >= waiting:
                break
            threading.Event().wait(0.01)
        assert len(self.group._queue) == waiting
        self.release.set()


@pytest.fixture
def group(tmp_path: Path) -> Any:
    engine = make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL CHECK (v >= 0))"))
    yield GroupCommit(engine, session_factory(engine))
    engine.dispose()


def _rows(group: GroupCommit) -> dict[str, int]:
    with group._engine.connect() as conn:
        return {k: v for k, v in conn.execute(text("SELECT k, v FROM t"))}


def _insert(key: str, value: int, then: Callable[[], None] | None = None) -> Callable[[Session], str]:
    def work(session: Session) -> str:
        session.execute(text("INSERT INTO t (k, v) VALUES (:k, :v)"), {"k": key, "v": value})
        if then is not None:
            then()
        return key

    return work


def test_a_failing_operation_leaves_nothing_and_the_others_commit(group: GroupCommit) -> None:
    def refuse() -> None:
        raise InsufficientFundsError("refused after its first write")

    works = {
        "a": _insert("a", 1),
        "b": _insert("b", 2, then=refuse),  # wrote, then raised: rolled back to its savepoint
        "c": _insert("c", -1),  # the CHECK constraint refuses it
        "d": _insert("a", 9),  # the primary key refuses it (a sees "a" from the same batch)
        "e": _insert("e", 5),
    }
    with ThreadPoolExecutor(len(works) + 1) as pool:
        batch = Batch(group, pool)
        first = batch.hold()
        futures = dict(zip(works, batch.queue(list(works.values())), strict=True))
        batch.let_go(len(works))
        first.result(WAIT)
        outcomes = {key: f.exception(WAIT) or f.result() for key, f in futures.items()}
    assert outcomes["a"] == "a"
    assert outcomes["e"] == "e"
    assert isinstance(outcomes["b"], InsufficientFundsError)
    assert type(outcomes["c"]).__name__ == "IntegrityError"
    assert type(outcomes["d"]).__name__ == "IntegrityError"
    assert _rows(group) == {"a": 1, "e": 5}
    assert (group.batches, group.operations) == (2, 1 + len(works))  # grouped: one commit for five


def test_operations_from_the_event_loop_share_a_batch_and_each_gets_its_own_answer(
    group: GroupCommit,
) -> None:
    """`run_async` (the lean order and payment path): no thread waits per operation, the same batches, the
    same savepoints; the answers come back on the event loop only after the batch's commit."""

    def refuse() -> None:
        raise InsufficientFundsError("refused after its first write")

    works = [_insert("a", 1), _insert("b", 2, then=refuse), _insert("c", -1), _insert("e", 5)]
    seen_before_commit: list[dict[str, int]] = []

    async def queue_all() -> list[object]:
        tasks = [asyncio.ensure_future(group.run_async(work)) for work in works]
        await asyncio.sleep(0)  # every operation queued
        seen_before_commit.append(_rows(group))
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    with ThreadPoolExecutor(2) as pool:
        batch = Batch(group, pool)
        first = batch.hold()
        assert batch.started.wait(WAIT)
        outcomes = pool.submit(asyncio.run, queue_all())
        batch.let_go(len(works))
        first.result(WAIT)
        a, b, c, e = outcomes.result(WAIT)
    assert (a, e) == ("a", "e")
    assert isinstance(b, InsufficientFundsError)
    assert type(c).__name__ == "IntegrityError"
    assert seen_before_commit == [{}]
    assert _rows(group) == {"a": 1, "e": 5}
    assert (group.batches, group.operations) == (2, 1 + len(works))
    assert asyncio.run(group.run_async(_insert("z", 3))) == "z"  # an idle queue: a writer thread leads
    assert group.run(_insert("y", 4)) == "y"  # and a thread's operation after it leads itself again
    assert _rows(group) == {"a": 1, "e": 5, "z": 3, "y": 4}


def test_a_database_failure_fails_the_whole_batch_and_commits_none_of_it(group: GroupCommit) -> None:
    def broken(session: Session) -> None:
        session.execute(text("SELECT * FROM no_such_table"))  # an OperationalError, like an I/O error

    with ThreadPoolExecutor(5) as pool:
        batch = Batch(group, pool)
        first = batch.hold()
        futures = [pool.submit(group.run, _insert("x", 1))]
        for _ in range(int(WAIT * 100)):
            if len(group._queue) == 1:
                break
            threading.Event().wait(0.01)
        futures.append(pool.submit(group.run, broken))
        for _ in range(int(WAIT * 100)):
            if len(group._queue) == 2:
                break
            threading.Event().wait(0.01)
        futures.append(pool.submit(group.run, _insert("y", 2)))
        batch.let_go(3)
        first.result(WAIT)
        errors = [f.exception(WAIT) for f in futures]
    assert all(isinstance(e, DatabaseUnavailableError) for e in errors), errors
    assert _rows(group) == {}
    assert group.run(_insert("z", 3)) == "z"  # the next batch works
    assert _rows(group) == {"z": 3}


@pytest.fixture
def shop(make_settings: Callable[..., CenterSettings], media: Any) -> tuple[Center, str]:
    settings = make_settings()
    catalog: CatalogService = catalog_for(settings)
    return Center(settings), add(catalog, media.text, title="Text", price=PRICE)


def test_concurrent_orders_in_one_batch_never_overdraw(shop: tuple[Center, str]) -> None:
    """12 orders of one device funded for 5, all in one batch: exactly 5 are made, 7 refused with nothing
    held, balance minus holds 0, the ledger balanced; an idempotent retry in the same batch is the same
    order; orders of another device in the batch are unaffected."""
    center, item = shop
    group = center.commerce.group
    assert group is not None
    poor, other = center.device(), center.device()
    center.fund(poor, 5 * PRICE)
    center.fund(other, 2 * PRICE)
    orders = center.app.state.center.orders

    def order(device: Any, key: str) -> Any:
        request = OrderRequest(item_id=item, device_id=device.device_id)
        return orders.create(request, device.device_id, key)

    calls = [(poor, f"poor-{n:04d}") for n in range(12)] + [(other, "other-0001"), (poor, "poor-0000")]
    with ThreadPoolExecutor(len(calls) + 1) as pool:
        batch = Batch(group, pool)
        first = batch.hold()
        futures = [pool.submit(order, device, key) for device, key in calls]
        batch.let_go(len(calls))
        first.result(WAIT)
        outcomes = [f.exception(WAIT) or f.result() for f in futures]
    assert group.batches == 2  # the hold, then all the orders together
    # poor-0000 twice (queue order between threads is not fixed): both the same order, or both refused
    pair = [outcomes[0], outcomes[13]]
    if any(isinstance(o, BaseException) for o in pair):
        assert all(isinstance(o, InsufficientFundsError) for o in pair), pair
    else:
        assert pair[0][0].order_id == pair[1][0].order_id
        assert sorted(created for _, created in pair) == [False, True]
    made = {o[0].order_id for o in outcomes[:12] if not isinstance(o, BaseException)}
    refused = [o for o in outcomes[:12] if isinstance(o, BaseException)]
    assert len(made) == 5
    assert Counter(type(e) for e in refused) == Counter({InsufficientFundsError: 7})
    assert not isinstance(outcomes[12], BaseException)
    assert outcomes[12][1]
    assert center.balance(ledger.wallet(poor.device_id, "JPY")) == 0
    assert center.balance(ledger.wallet(other.device_id, "JPY")) == PRICE
    report = center.report()
    assert report["checks"]["ok"], report["checks"]
    problem(center.order(poor, item), "insufficient-funds", 402)  # and the next one is refused too


def test_payments_grouped_with_orders_settle_exactly_once(shop: tuple[Center, str]) -> None:
    """The same payment three times and a new order in one batch: one settlement, the same receipt."""
    center, item = shop
    group = center.commerce.group
    assert group is not None
    device = center.device()
    center.fund(device, 3 * PRICE)
    answer = center.order(device, item).json()
    sealed = device.payment(center.commerce, answer["order"])
    settlement = center.app.state.center.settlement
    orders = center.app.state.center.orders
    with ThreadPoolExecutor(6) as pool:
        batch = Batch(group, pool)
        first = batch.hold()
        pays = [pool.submit(settlement.pay, answer["order_id"], sealed, device.device_id) for _ in range(3)]
        another = pool.submit(
            orders.create,
            OrderRequest(item_id=item, device_id=device.device_id),
            device.device_id,
            "k-000001",
        )
        batch.let_go(4)
        first.result(WAIT)
        receipts = {p.result(WAIT).receipt for p in pays}
        assert another.result(WAIT)[1] is True
    assert len(receipts) == 1
    assert center.balance(ledger.wallet(device.device_id, "JPY")) == PRICE
    report = center.report()
    assert report["checks"]["ok"], report["checks"]
    with center.commerce.sessions() as session:
        settles = session.scalars(select(LedgerTxn.txn_id).where(LedgerTxn.txn_id.like("settle:%"))).all()
    assert settles == [f"settle:{answer['order_id']}"]


def queued(group: GroupCommit, n: int) -> None:
    for _ in range(int(WAIT * 100)):
        if len(group._queue) >= n:
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"{n} operations did not queue")


def test_a_failed_batch_leaves_no_stale_cache_behind(shop: tuple[Center, str]) -> None:
    """center.ledger remembers house accounts once they are committed, so later operations skip creating them.
    A savepoint's release is no commit: when the batch fails at the database, the accounts its operations
    created do not exist, and the process must not remember them (a later transfer to them would fail)."""
    center, _ = shop
    group = center.commerce.group
    assert group is not None
    url = str(center.app.state.center.engine.url)

    def open_eur(session: Session) -> None:
        ledger.Ledger(session, 0).open_house_accounts("EUR")

    def broken(session: Session) -> None:
        session.execute(text("SELECT * FROM no_such_table"))

    with ThreadPoolExecutor(3) as pool:
        batch = Batch(group, pool)
        first = batch.hold()
        opened = pool.submit(group.run, open_eur)
        queued(group, 1)
        failing = pool.submit(group.run, broken)
        batch.let_go(2)
        first.result(WAIT)
        assert isinstance(failing.exception(WAIT), DatabaseUnavailableError)
        assert isinstance(opened.exception(WAIT), DatabaseUnavailableError)
    assert (url, ledger.revenue("EUR")) not in ledger._KNOWN
    group.run(open_eur)
    assert (url, ledger.revenue("EUR")) in ledger._KNOWN
    balances = {a["account"] for a in center.report()["accounts"]}
    assert ledger.revenue("EUR") in balances


def test_operations_on_the_connection_alone_or_with_a_session_commit_or_roll_back_whole(
    group: GroupCommit,
) -> None:
    """An operation gets the batch's connection for `session.connection()` and a real ORM session only when it
    uses one (center.db.group `_Operation`): either way its writes commit together or not at all, and its
    after-commit work (`ON_DURABLE`) runs only once the batch committed."""
    durable: list[str] = []

    def direct(key: str, fail: bool) -> Callable[[Session], str]:
        def work(session: Session) -> str:
            session.connection().execute(text("INSERT INTO t (k, v) VALUES (:k, 1)"), {"k": key})
            assert session.new == ()  # no ORM session was made for this
            assert session.dirty == ()
            session.flush()
            if fail:
                raise InsufficientFundsError("refused after a direct write")
            return key

        return work

    def mixed(key: str, fail: bool) -> Callable[[Session], str]:
        def work(session: Session) -> str:
            session.connection().execute(text("INSERT INTO t (k, v) VALUES (:k, 2)"), {"k": key + "-direct"})
            session.execute(text("INSERT INTO t (k, v) VALUES (:k, 3)"), {"k": key + "-orm"})
            session.info[ON_DURABLE].append(lambda: durable.append(key))
            assert not durable  # not before the batch's commit
            if fail:
                raise InsufficientFundsError("refused after writes through both")
            return key

        return work

    works = [direct("a", False), direct("b", True), mixed("c", False), mixed("d", True), direct("e", False)]
    with ThreadPoolExecutor(len(works) + 1) as pool:
        batch = Batch(group, pool)
        first = batch.hold()
        futures = batch.queue(works)
        batch.let_go(len(works))
        first.result(WAIT)
        outcomes = [f.exception(WAIT) or f.result() for f in futures]
    assert outcomes[0] == "a"
    assert outcomes[2] == "c"
    assert outcomes[4] == "e"
    assert isinstance(outcomes[1], InsufficientFundsError)
    assert isinstance(outcomes[3], InsufficientFundsError)
    assert _rows(group) == {"a": 1, "c-direct": 2, "c-orm": 3, "e": 1}
    assert durable == ["c"]
    assert (group.batches, group.operations) == (2, 1 + len(works))
