"""Group commit on SQLite: the write operations that queue meanwhile share one transaction and one fsync.

With `synchronous=FULL` every commit waits for an fsync of the WAL; one order per fsync capped SQLite at a few
hundred orders per second whatever the CPU. `GroupCommit.run(work)` queues `work(session)`; the first caller
in an idle queue becomes the leader and runs everything queued (up to `max_batch`) in ONE transaction
(`BEGIN IMMEDIATE`), each operation in a SAVEPOINT of its own and with an ORM session of its own, then commits
once. Every caller gets its own result or exception only after that commit returned (FULL: after the fsync):

- an operation that raises is rolled back to its savepoint: nothing of it is committed, the others go on
  (they never see its writes), and its caller gets its own exception;
- if BEGIN or the COMMIT fails, every caller of the batch gets `DatabaseUnavailableError` and nothing of the
  batch is committed (no answer was given before the commit, so none is wrong);
- operations of one batch run one after the other on one connection, in queue order: each sees the writes
  of those before it exactly as if they had committed one by one (the same serial order); the database's
  constraints (balance minus holds ≥ 0, unique ids) judge each at its own statements.

Scheduling only, like the writer gate in `center.db.tx`: across processes BEGIN IMMEDIATE still serializes the
batches, and exactly-once still rests on unique constraints and the database lock. No thread is started: the
leader is a caller, and when it is done it hands the lead to the first caller still waiting.
PostgreSQL does not need this (it commits concurrent transactions with one WAL flush by itself).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from center.db.tx import writer_gate
from center.errors import DatabaseUnavailableError

T = TypeVar("T")
MAX_BATCH = 64
#: `session.info` key of an operation's session in a batch: a list where code that would act "after commit"
#: (a Session after_commit hook fires at the savepoint's release) appends a callable instead; the callables
#: run once the whole batch committed, and never if it did not (center.ledger's cache of house accounts).
ON_DURABLE = "coffer.on_durable"


class _Job(Generic[T]):
    __slots__ = ("done", "error", "value", "wake", "work")

    def __init__(self, work: Callable[[Session], T]) -> None:
        self.work = work
        self.wake = threading.Event()  # set when done, or when this job's caller is to lead the next batch
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
            job.wake.wait()
            if job.done:
                return job.outcome()
            # handed the lead: this job is first in the queue
        with self._mutex:
            batch = [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]
        try:
            self._commit(batch)
        finally:
            with self._mutex:
                successor = self._queue[0] if self._queue else None
                self._busy = successor is not None
            for other in batch:
                other.done = True
                if other is not job:
                    other.wake.set()
            if successor is not None:
                successor.wake.set()
        return job.outcome()

    def _commit(self, batch: list[_Job[Any]]) -> None:
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
        """One operation in its own savepoint and ORM session on the batch's connection."""
        later: list[Callable[[], None]] = []
        try:
            with (
                self._sessions(bind=conn, join_transaction_mode="create_savepoint") as session,
                session.begin(),
            ):
                session.info[ON_DURABLE] = later
                job.value = job.work(session)
            durable.extend(later)
        except IntegrityError as exc:
            job.error = exc  # the service decides what a constraint means (as with tx.write)
        except OperationalError:
            # I/O error, disk full, …: SQLite may have rolled back the whole transaction by itself, so the
            # batch stops here and every operation in it fails (nothing of it is committed)
            raise
        except Exception as exc:
            job.error = exc
