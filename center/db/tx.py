"""Write transactions that stay exactly-once across worker processes (DESIGN.md "Scale").

`write(sessions)` opens one transaction for a whole service operation (STYLE.md item 13). On SQLite it starts
with `BEGIN IMMEDIATE`: the database's write lock is taken before the first read, so a read-check-write can
never interleave with another writer (in WAL mode readers go on). On PostgreSQL the services take row locks
(`SELECT … FOR UPDATE` on the device row: `lock_device`), so every operation that moves a device's money runs
one at a time per device, in any number of processes. Database errors leave as `DatabaseUnavailableError`
(503) unless the caller handles `IntegrityError` itself; the transaction is rolled back either way.

On SQLite the threads of one process also queue for the write lock in a per-database gate before BEGIN
IMMEDIATE. That is scheduling, not correctness: SQLite's busy handler sleeps 1, 2, 5 … 100 ms between tries,
so under load writers slept while the lock was free (64 clients: p99 of seconds). Exactly-once still rests on
the database alone (BEGIN IMMEDIATE across processes; tests/center/test_concurrency.py). Orders and payments
on SQLite go through `center.db.group` instead (many operations, one transaction and one fsync), which takes
the same gate.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from center.errors import DatabaseUnavailableError

_GATES: dict[str, threading.RLock] = {}
_GATES_LOCK = threading.Lock()


def dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def writer_gate(engine: Engine) -> AbstractContextManager[object]:
    """This process's queue for an SQLite database's write lock (a no-op on PostgreSQL: row locks)."""
    if engine.dialect.name != "sqlite":
        return nullcontext()
    key = str(engine.url)
    gate = _GATES.get(key)
    if gate is None:
        with _GATES_LOCK:
            gate = _GATES.setdefault(key, threading.RLock())
    return gate


@contextmanager
def write(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """One read-write transaction, committed when the block ends without an exception."""
    with sessions() as session:
        engine = session.get_bind().engine
        try:
            with writer_gate(engine), session.begin():
                if engine.dialect.name == "sqlite":
                    session.execute(text("BEGIN IMMEDIATE"))
                yield session
        except IntegrityError:
            raise
        except OperationalError as exc:
            raise DatabaseUnavailableError(
                f"the database refused the transaction: {type(exc).__name__}"
            ) from exc


@contextmanager
def read(sessions: sessionmaker[Session]) -> Iterator[Session]:
    with sessions() as session:
        try:
            with session.begin():
                yield session
        except OperationalError as exc:
            raise DatabaseUnavailableError(f"the database does not answer: {type(exc).__name__}") from exc
