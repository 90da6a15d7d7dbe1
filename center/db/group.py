"""Group commit on SQLite: the write operations that queue meanwhile share one transaction and one fsync.

With `synchronous=FULL` every commit waits for an fsync of the WAL; one order per fsync capped SQLite at a few
hundred orders per second whatever the CPU. `GroupCommit.run(work)` queues `work(session)`; the first caller
in an idle queue becomes the leader and runs everything queued (up to `max_batch`) in ONE transaction
(`BEGIN IMMEDIATE`), each operation in a SAVEPOINT of its own (and an ORM session, if it uses one), then
commits once. Every caller gets its own result or exception only after that commit returned (FULL: after the
fsync):

- an operation that raises is rolled back to its savepoint: nothing of it is committed, the others go on
  (they never see its writes), and its caller gets its own exception;
- if BEGIN or the COMMIT fails, every caller of the batch gets `DatabaseUnavailableError` and nothing of the
  batch is committed (no answer was given before the commit, so none is wrong);
- operations of one batch run one after the other on one connection, in queue order: each sees the writes
  of those before it exactly as if they had committed one by one (the same serial order); the database's
  constraints (balance minus holds ≥ 0, unique ids) judge each at its own statements.

Scheduling only, like the writer gate in `center.db.tx`: across processes BEGIN IMMEDIATE still serializes the
batches, and exactly-once still rests on unique constraints and the database lock. Two ways in, one queue:

- `run(work)` from a thread: the leader is a caller, and when it is done it hands the lead to the first
  caller still waiting (no thread is started);
- `await run_async(work)` from the event loop (the lean order and payment path): the operation needs no
  thread of its own while it waits. When it finds the queue idle, or is first in line after a batch, a
  writer thread is started that leads batch after batch while only such operations wait, hands the lead to
  a waiting `run` caller as above, and ends when the queue stayed empty for `LINGER`. Each batch's answers
  go back to the event loop with one wake-up per batch, not one thread hop per request.

PostgreSQL does not need this (it commits concurrent transactions with one WAL flush by itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from center.db.tx import writer_gate
from center.errors import DatabaseUnavailableError

log = logging.getLogger("center.db")
T = TypeVar("T")
MAX_BATCH = 64
#: seconds a writer thread waits for more operations before it ends (starting one costs more than waiting)
LINGER = 0.05
#: `session.info` key of an operation's session in a batch: a list where code that would act "after commit"
#: (a Session after_commit hook fires at the savepoint's release) appends a callable instead; the callables
#: run once the whole batch committed, and never if it did not (center.ledger's cache of house accounts).
ON_DURABLE = "coffer.on_durable"


class _Job(Generic[T]):
    __slots__ = ("done", "error", "future", "loop", "value", "wake", "work")

    def __init__(
        self,
        work: Callable[[Session], T],
        loop: asyncio.AbstractEventLoop | None = None,
        future: asyncio.Future[T] | None = None,
    ) -> None:
        self.work = work
        # `run`: set when done, or when this job's caller is to lead the next batch; None for `run_async`
        self.wake = threading.Event() if future is None else None
        self.loop = loop
        self.future = future  # `run_async`: resolved on its event loop once the batch committed
        self.done = False
        self.value: Any = None
        self.error: BaseException | None = None

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[no-any-return]


class GroupCommit:
    """One per SQLite engine and process (`Commerce.write` uses it for orders and payments)."""

    def __init__(self, engine: Engine, sessions: sessionmaker[Session], max_batch: int = MAX_BATCH) -> None:
        if engine.dialect.name != "sqlite":
            raise ValueError("group commit is for SQLite (PostgreSQL groups its commits itself)")
        self._engine = engine
        self._sessions = sessions
        self._max_batch = max_batch
        self._mutex = threading.Lock()
        self._queue: deque[_Job[Any]] = deque()
        self._arrived = threading.Condition(self._mutex)  # notified when an operation queues behind a lead
        self._busy = False
        #: batches committed and operations in them (observability and tests: how much was grouped)
        self.batches = 0
        self.operations = 0

    def run(self, work: Callable[[Session], T]) -> T:
        """`work(session)` inside a savepoint of a shared transaction; its result once that is durable."""
        job: _Job[T] = _Job(work)
        with self._mutex:
            self._queue.append(job)
            lead = not self._busy
            self._busy = True
            if not lead:
                self._arrived.notify()  # a lingering writer thread hands this caller the lead
        if not lead:
            assert job.wake is not None
            job.wake.wait()
            if job.done:
                return job.outcome()
            # handed the lead: this job is first in the queue
        with self._mutex:
            batch = [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]
        try:
            self._commit(batch)
        finally:
            self._answer(batch, job)
            self._pass_lead()
        return job.outcome()

    async def run_async(self, work: Callable[[Session], T]) -> T:
        """`run` for a coroutine on the event loop: the same batches, no thread held while it waits."""
        loop = asyncio.get_running_loop()
        job: _Job[T] = _Job(work, loop, loop.create_future())
        with self._mutex:
            self._queue.append(job)
            lead = not self._busy
            self._busy = True
            if not lead:
                self._arrived.notify()  # a lingering writer thread takes it
        if lead:
            self._start_writer()
        assert job.future is not None
        return await job.future

    def _start_writer(self) -> None:
        threading.Thread(target=self._write, name="coffer-group-commit", daemon=True).start()

    def _write(self) -> None:
        """A writer thread: batch after batch while `run_async` operations head the queue (see the module
        docstring); every error is its operations' (`_commit` gives each its answer)."""
        while True:
            with self._mutex:
                if not self._queue:  # linger a moment: the next operation usually comes at once
                    self._arrived.wait(LINGER)
                head = self._queue[0] if self._queue else None
                if head is None:
                    self._busy = False
                    return
                if head.wake is not None:  # a `run` caller waits: it leads, as it would have
                    head.wake.set()
                    return
                batch = [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]
            try:
                self._commit(batch)
            except Exception:  # already each operation's error (_commit hands it over); say so, go on
                log.exception("a group commit batch failed outside its operations")
            finally:
                self._answer(batch, None)

    def _pass_lead(self) -> None:
        """After a `run` leader's batch: wake the next `run` caller to lead, or start a writer thread for a
        `run_async` operation, or go idle."""
        with self._mutex:
            successor = self._queue[0] if self._queue else None
            self._busy = successor is not None
        if successor is None:
            return
        if successor.wake is not None:
            successor.wake.set()
        else:
            self._start_writer()

    @staticmethod
    def _answer(batch: list[_Job[Any]], leader: _Job[Any] | None) -> None:
        """Hand every operation of a committed (or failed) batch its outcome: a `run` caller is woken, the
        `run_async` ones of each event loop are resolved with one call into that loop."""
        loops: dict[asyncio.AbstractEventLoop, list[_Job[Any]]] = {}
        for job in batch:
            job.done = True
            if job.loop is not None:
                loops.setdefault(job.loop, []).append(job)
            elif job is not leader and job.wake is not None:
                job.wake.set()
        for loop, jobs in loops.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for these answers any more
                loop.call_soon_threadsafe(_resolve, jobs)

    def _commit(self, batch: list[_Job[Any]]) -> None:
        """One transaction for `batch`; each job gets its value or error (never raises Exception)."""
        try:
            with writer_gate(self._engine), self._engine.connect() as conn:
                outer = conn.begin()
                conn.execute(text("BEGIN IMMEDIATE"))
                durable: list[Callable[[], None]] = []
                for job in batch:
                    self._one(conn, job, durable)
                outer.commit()  # the one fsync of the batch (synchronous=FULL)
                self.batches += 1
                self.operations += len(batch)
            for callback in durable:
                callback()
        except SQLAlchemyError as exc:
            failed = DatabaseUnavailableError(f"the database refused the transaction: {type(exc).__name__}")
            failed.__cause__ = exc
            for job in batch:
                job.value, job.error = None, job.error or failed
        except BaseException as exc:  # never leave a caller waiting without an answer
            for job in batch:
                job.value, job.error = None, job.error or exc
            raise

    def _one(self, conn: Any, job: _Job[Any], durable: list[Callable[[], None]]) -> None:
        """One operation in its own savepoint on the batch's connection, with an ORM session made only if it
        uses one (`_Operation`)."""
        later: list[Callable[[], None]] = []
        savepoint = conn.begin_nested()
        operation = _Operation(self._sessions, conn, later)
        try:
            job.value = job.work(cast(Session, operation))
            operation.commit()
            savepoint.commit()
            durable.extend(later)
        except IntegrityError as exc:
            operation.rollback()
            savepoint.rollback()
            job.error = exc  # the service decides what a constraint means (as with tx.write)
        except OperationalError:
            # I/O error, disk full, …: SQLite may have rolled back the whole transaction by itself, so the
            # batch stops here and every operation in it fails (nothing of it is committed)
            with contextlib.suppress(SQLAlchemyError):
                operation.rollback()
                savepoint.rollback()
            raise
        except Exception as exc:
            operation.rollback()
            savepoint.rollback()
            job.error = exc


class _Operation:
    """What an operation of a batch gets as its `session`: the batch's connection (already in the
    operation's savepoint) for `connection()`, which is all the hot paths (orders, payments: statements on
    the DBAPI cursor, center.db.prepared) use; anything else of a `Session` makes a real one on first use,
    joined to the connection in a savepoint of its own inside the operation's (as every operation had one
    before 2026-11-30 09:00: ~0.025 ms each), committed or rolled back with the operation. Without one there
    are no ORM objects, so nothing is pending (`new`, `dirty`, `deleted` empty; `flush` does nothing)."""

    __slots__ = ("_conn", "_later", "_real", "_sessions")

    def __init__(self, sessions: sessionmaker[Session], conn: Any, later: list[Callable[[], None]]) -> None:
        self._sessions = sessions
        self._conn = conn
        self._later = later
        self._real: Session | None = None

    def connection(self) -> Any:
        return self._conn

    def get_bind(self) -> Any:
        return self._conn

    @property
    def new(self) -> Any:
        return () if self._real is None else self._real.new

    @property
    def dirty(self) -> Any:
        return () if self._real is None else self._real.dirty

    @property
    def deleted(self) -> Any:
        return () if self._real is None else self._real.deleted

    def flush(self) -> None:
        if self._real is not None:
            self._real.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session(), name)

    def _session(self) -> Session:
        if self._real is None:
            session = self._sessions(bind=self._conn, join_transaction_mode="create_savepoint")
            session.begin()
            session.info[ON_DURABLE] = self._later
            self._real = session
        return self._real

    def commit(self) -> None:
        """Flush and commit the real session, if one was made (its after-commit work goes to `ON_DURABLE`)."""
        if self._real is not None:
            self._real.commit()
            self._real.close()

    def rollback(self) -> None:
        if self._real is not None:
            self._real.rollback()
            self._real.close()


def _resolve(jobs: list[_Job[Any]]) -> None:
    """On the event loop: each `run_async` future gets its operation's outcome (unless its caller gave up)."""
    for job in jobs:
        future = job.future
        if future is None or future.done():
            continue
        if job.error is not None:
            future.set_exception(job.error)
        else:
            future.set_result(job.value)
