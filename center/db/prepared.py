"""Hot-path statements on SQLite's DBAPI cursor, compiled once (docs/center-commerce.md "Performance").

SQLAlchemy's execution layer (cache key, compiled-cache lookup, parameter processing, result set-up) cost
more per statement than SQLite's own work for the orders' and payments' small statements (~20 µs against
~10 µs; an order runs about ten of them). `Prepared(statement)` keeps the Core statement as the one
definition, compiles it once per process to SQL with named parameters, and on SQLite executes it on the
DBAPI connection under the caller's SQLAlchemy `Connection` — in the same transaction (and savepoint): no
separate connection, no autocommit. Rows come back as named tuples with the statement's column keys.

Only statements whose parameters and results need no SQLAlchemy type processing on SQLite may use it
(strings, integers, bytes; no expanding `IN`, no Boolean, JSON or DateTime results): compiling refuses a
statement with a post-compile parameter. DBAPI errors are translated to SQLAlchemy's own exception classes
(`IntegrityError`, `OperationalError`, …) exactly as the execution layer would raise them, so the callers'
handling (constraints, 503 on an I/O error) is unchanged. On any other database (PostgreSQL) the statement
goes through `Connection.execute` as before; rows there are SQLAlchemy `Row`s (also named tuples).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement


class _Compiled:
    __slots__ = ("defaults", "row", "sql")

    def __init__(self, sql: str, defaults: dict[str, Any]) -> None:
        self.sql = sql
        self.defaults = defaults
        self.row: Any = None  # the named tuple of its rows, made from the first cursor's description


class Prepared:
    """One Core statement, run on SQLite's DBAPI cursor (see the module docstring)."""

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._compiled: _Compiled | None = None
        self._lock = threading.Lock()

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled
        if compiled is not None:
            return compiled
        with self._lock:
            make: Any = type(dialect)
            named = make(paramstyle="named")
            result = self.statement.compile(dialect=named)
            sql = str(result)
            if "POSTCOMPILE" in sql:
                raise ValueError("a statement with an expanding parameter cannot be prepared")
            compiled = _Compiled(sql, dict(result.params))
            self._compiled = compiled
            return compiled

    def execute(self, conn: Connection, params: dict[str, Any]) -> Any:
        """The DBAPI cursor of the executed statement (SQLite), or SQLAlchemy's `CursorResult` (others)."""
        if conn.dialect.name != "sqlite":
            return conn.execute(self.statement, params)  # type: ignore[call-overload]
        compiled = self._compile(conn.dialect)
        values = {**compiled.defaults, **params} if compiled.defaults else params
        dbapi = conn.connection.driver_connection
        try:
            return dbapi.execute(compiled.sql, values)  # type: ignore[union-attr]
        except conn.dialect.loaded_dbapi.Error as exc:
            raise _translate(compiled.sql, values, exc, conn.dialect) from exc

    def execute_many(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        if len(rows) == 1:  # (sqlite3's executemany costs several times execute for one row)
            self.execute(conn, rows[0])
            return
        if conn.dialect.name != "sqlite":
            conn.execute(self.statement, list(rows))  # type: ignore[call-overload]
            return
        compiled = self._compile(conn.dialect)
        if compiled.defaults:
            rows = [{**compiled.defaults, **row} for row in rows]
        dbapi = conn.connection.driver_connection
        try:
            dbapi.executemany(compiled.sql, rows)  # type: ignore[union-attr]
        except conn.dialect.loaded_dbapi.Error as exc:
            raise _translate(compiled.sql, rows, exc, conn.dialect) from exc

    def rows(self, conn: Connection, params: dict[str, Any]) -> list[Any]:
        """Every row (named tuples with the statement's column keys)."""
        result = self.execute(conn, params)
        if conn.dialect.name != "sqlite":
            return list(result)
        compiled = self._compile(conn.dialect)
        try:
            fetched = result.fetchall()  # (an UPDATE … RETURNING may fail at any step)
        except conn.dialect.loaded_dbapi.Error as exc:
            raise _translate(compiled.sql, params, exc, conn.dialect) from exc
        if compiled.row is None:
            keys = [str(column[0]) for column in result.description]
            compiled.row = collections.namedtuple("Row", keys, rename=True)  # type: ignore[misc]
        make = compiled.row._make
        return [make(row) for row in fetched]

    def one_or_none(self, conn: Connection, params: dict[str, Any]) -> Any:
        found = self.rows(conn, params)
        if len(found) > 1:
            raise ValueError("more than one row where at most one was expected")
        return found[0] if found else None

    def one(self, conn: Connection, params: dict[str, Any]) -> Any:
        found = self.one_or_none(conn, params)
        if found is None:
            raise ValueError("no row where one was expected")
        return found

    def scalar(self, conn: Connection, params: dict[str, Any]) -> Any:
        """The first column of the first row, or None."""
        found = self.rows(conn, params)
        return found[0][0] if found else None

    def rowcount(self, conn: Connection, params: dict[str, Any]) -> int:
        return int(self.execute(conn, params).rowcount)


def _translate(sql: str, params: Any, exc: Exception, dialect: Dialect) -> Exception:
    """SQLAlchemy's exception for a DBAPI error, as its execution layer raises it (IntegrityError, …)."""
    return DBAPIError.instance(sql, params, exc, dialect.loaded_dbapi.Error, dialect=dialect)
