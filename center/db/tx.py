"""Write transactions that stay exactly-once across worker processes (DESIGN.md "Scale").

`write(sessions)` opens one transaction for a whole service operation (STYLE.md item 13). On SQLite it starts
with `BEGIN IMMEDIATE`: the database's write lock is taken before the first read, so a read-check-write can
never interleave with another writer (in WAL mode readers go on). On PostgreSQL the services take row locks
(`SELECT … FOR UPDATE` on the device row: `lock_device`), so every operation that moves a device's money runs
one at a time per device, in any number of processes. Database errors leave as `DatabaseUnavailableError`
(503) unless the caller handles `IntegrityError` itself; the transaction is rolled back either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from center.errors import DatabaseUnavailableError


def dialect(session: Session) -> str:
    return session.get_bind().dialect.name


@contextmanager
def write(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """One read-write transaction, committed when the block ends without an exception."""
    with sessions() as session:
        try:
            with session.begin():
                if dialect(session) == "sqlite":
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
