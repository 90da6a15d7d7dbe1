"""Write transactions that stay exactly-once across worker processes (DESIGN.md "Scale").

`write(sessions)` opens one transaction for a whole service operation (STYLE.md item 13). On SQLite it starts
with `BEGIN IMMEDIATE`: the database's write lock is taken before the first read, so a read-check-write can
never interleave with another writer (in WAL mode readers go on). On PostgreSQL the services take row locks
(`SELECT … FOR UPDATE` on the device row: `lock_device`), so every operation that moves a device's money runs
one at a time per device, in any number of processes. Database errors leave as `DatabaseUnavailableError`
(503) unless the caller handles `IntegrityError` itself; the transaction is rolled back either way.

On SQLite every writer also queues for the write lock in a gate before BEGIN IMMEDIATE: the threads of one
process in a per-database lock, and the processes (`center serve --workers N`, the CLI) in an `flock` on a
lock file next to the database (`center.db-writer.lock`), taken blocking with the GIL released, so a writer
waits in the kernel and wakes as the other's COMMIT returns. That is scheduling, not correctness: SQLite's
busy handler sleeps 1, 2, 5 … 100 ms between tries, so under load writers slept while the lock was free (64
clients: p99 of seconds). Exactly-once still rests on the database alone (BEGIN IMMEDIATE across processes,
unique constraints; tests/center/test_concurrency.py, tests/center/test_workers.py): a writer that skips the
gate (an old process, another program, a lock file that cannot be opened) only waits in the busy handler.
Orders and payments on SQLite go through `center.db.group` instead (many operations, one transaction and one
fsync), which takes the same gate.

The processes take turns: a writer first takes a second `flock`, the queue (`center.db-writer.queue`), then
the write lock, and lets go of the queue as soon as it holds the write lock. So a process that has just let go
of the write lock and wants it again (a group commit's next batch) queues behind a process already waiting
for it, instead of taking it back before the waiter is even scheduled (`flock` is not fair: with two workers
one waited up to 44 ms, three or four of the other's batches, for its turn).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from types import TracebackType

from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from center.errors import DatabaseUnavailableError

log = logging.getLogger("center.db")
#: appended to the SQLite database's path (like SQLite's own `-wal` and `-shm` files)
LOCK_SUFFIX = "-writer.lock"
#: the queue in front of it (module docstring: the processes take turns)
QUEUE_SUFFIX = "-writer.queue"


class WriterGate:
    """One SQLite database's writers, queued: the threads of this process on a re-entrant lock, then the
    processes on an exclusive `flock` of `lock_path`, entered through an exclusive `flock` of its queue file
    (taken before it, let go once it is held: the processes take turns). None: this process only.
    Re-entrant in a thread; the file lock is taken by the outermost entry and released by its exit.
    Scheduling only (module docstring)."""

    def __init__(self, lock_path: str | None) -> None:
        self._lock_path = lock_path
        self._threads = threading.RLock()
        self._depth = 0
        self._fds: tuple[int, int] | None = None  # (queue, lock)
        self._pid = 0

    def _files(self) -> tuple[int, int] | None:
        if self._lock_path is None:
            return None
        if self._fds is None or self._pid != os.getpid():  # (a forked child opens its own descriptions)
            queue_path = self._lock_path[: -len(LOCK_SUFFIX)] + QUEUE_SUFFIX
            opened: list[int] = []
            try:
                for path in (queue_path, self._lock_path):
                    opened.append(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
            except OSError as exc:
                for fd in opened:
                    os.close(fd)
                log.warning(
                    "no cross-process writer lock (%s: %s); writers wait in SQLite",
                    exc.filename or self._lock_path,
                    exc.strerror,
                )
                self._lock_path = None
                return None
            self._fds = (opened[0], opened[1])
            self._pid = os.getpid()
        return self._fds

    def __enter__(self) -> WriterGate:
        self._threads.acquire()
        try:
            if self._depth == 0:
                fds = self._files()
                if fds is not None:
                    queue, lock = fds
                    # block in the kernel, GIL released; the queue first, so that the processes take turns
                    fcntl.flock(queue, fcntl.LOCK_EX)
                    try:
                        fcntl.flock(lock, fcntl.LOCK_EX)
                    finally:
                        fcntl.flock(queue, fcntl.LOCK_UN)
            self._depth += 1
        except BaseException:
            self._threads.release()
            raise
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        try:
            self._depth -= 1
            if self._depth == 0 and self._fds is not None and self._lock_path is not None:
                fcntl.flock(self._fds[1], fcntl.LOCK_UN)
        finally:
            self._threads.release()


_GATES: dict[str, WriterGate] = {}
_GATES_LOCK = threading.Lock()


def lock_path(engine: Engine) -> str | None:
    """The cross-process writer lock file of an SQLite file database (None: in memory)."""
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return os.path.abspath(database) + LOCK_SUFFIX


def dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def writer_gate(engine: Engine) -> AbstractContextManager[object]:
    """The queue for an SQLite database's write lock, across threads and processes (a no-op on PostgreSQL:
    row locks)."""
    if engine.dialect.name != "sqlite":
        return nullcontext()
    key = str(engine.url)
    gate = _GATES.get(key)
    if gate is None:
        with _GATES_LOCK:
            gate = _GATES.get(key)
            if gate is None:
                gate = _GATES[key] = WriterGate(lock_path(engine))
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
