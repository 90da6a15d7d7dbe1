"""Has anything been committed to the SQLite database since the last look? One `PRAGMA data_version`.

SQLite documents the pragma's value as a property of the connection that asks: it differs between two
calls exactly when another connection, in this process or any other, committed in between (a checkpoint is
not a change). `CommitWatch` keeps one read-only connection of its own that never writes, so every commit
by the server's pool, a `center` CLI or another worker moves it. A cache validated at stamp S is still valid
while the stamp reads S: the catalog's page cache asks this (~3 µs) before its version query (~55 µs on a
pooled session), which is most of what `GET /v1/items` costs (docs/performance.md, "Center catalog").

Only for a database file: an in-memory database is private to each connection (a watch would see no
commits, ever), so `commit_watch` gives None there and for other dialects, and callers keep querying.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Engine


class CommitWatch:
    def __init__(self, database: Path) -> None:
        # mode=ro: this connection can never be the one whose own commits the pragma would not show
        self._conn = sqlite3.connect(
            f"file:{quote(str(database))}?mode=ro", uri=True, check_same_thread=False, isolation_level=None
        )
        self._lock = threading.Lock()

    def stamp(self) -> int | None:
        """The current data_version; None when it cannot be read (the caller then checks the hard way)."""
        with self._lock:
            try:
                row = self._conn.execute("PRAGMA data_version").fetchone()
            except sqlite3.Error:
                return None
        return int(row[0]) if row else None

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def commit_watch(engine: Engine) -> CommitWatch | None:
    """A watch on `engine`'s SQLite database file, or None (PostgreSQL, in-memory, not openable yet)."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database)
    if not path.is_file():
        return None
    try:
        return CommitWatch(path)
    except sqlite3.Error:
        return None
