"""Engine and sessions: SQLite in WAL mode by default, PostgreSQL through psycopg 3; Alembic upgrades."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from center.errors import ConfigError, DatabaseUnavailableError

MIGRATIONS = Path(__file__).parent / "migrations"


SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL"}


def _sqlite_pragmas(synchronous: str) -> Any:
    def apply(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={SYNCHRONOUS[synchronous]}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.close()

    return apply


_SAVEPOINT_NAME = re.compile(r"\A[a-z_][a-z0-9_]*\Z")  # SQLAlchemy's own names: sa_savepoint_N


def _direct_savepoints(dialect: Dialect) -> None:
    """SAVEPOINT, RELEASE and ROLLBACK TO on SQLite's DBAPI connection, without SQLAlchemy's execution
    layer: every order and payment of a group commit runs in a savepoint of its own (center.db.group), and
    the two statements cost more through the execution layer than the rest of its bookkeeping. Errors
    leave as SQLAlchemy's exception classes, as before."""
    error = dialect.loaded_dbapi.Error

    def run(connection: Connection, verb: str, name: str) -> None:
        if not _SAVEPOINT_NAME.match(name):
            raise ValueError(f"unexpected savepoint name {name!r}")
        sql = f"{verb} {name}"
        try:
            connection.connection.driver_connection.execute(sql)  # type: ignore[union-attr]
        except error as exc:
            raise DBAPIError.instance(sql, None, exc, error, dialect=dialect) from exc

    dialect.do_savepoint = lambda connection, name: run(connection, "SAVEPOINT", name)  # type: ignore[method-assign]
    dialect.do_release_savepoint = lambda connection, name: run(connection, "RELEASE SAVEPOINT", name)  # type: ignore[method-assign]
    dialect.do_rollback_to_savepoint = lambda connection, name: run(connection, "ROLLBACK TO SAVEPOINT", name)  # type: ignore[method-assign]


def make_engine(url: str, *, sqlite_synchronous: str = "full") -> Engine:
    """An engine for `url`; a bare `postgresql://` URL uses psycopg 3. SQLite runs in WAL mode with
    `synchronous=FULL` unless told `normal` (CenterSettings.sqlite_synchronous: durability on power loss)."""
    if sqlite_synchronous not in SYNCHRONOUS:
        raise ConfigError(f"sqlite synchronous must be one of {sorted(SYNCHRONOUS)}")
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"check_same_thread": False})
            event.listen(engine, "connect", _sqlite_pragmas(sqlite_synchronous))
            _direct_savepoints(engine.dialect)
        else:
            engine = create_engine(url, pool_pre_ping=True)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise ConfigError("the database URL is not a usable SQLAlchemy URL") from exc
    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the Alembic migrations (`center db upgrade`, and at every `center serve`)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    except SQLAlchemyError as exc:
        raise DatabaseUnavailableError(f"cannot migrate the database: {type(exc).__name__}") from exc


def ping(engine: Engine) -> None:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise DatabaseUnavailableError("the database does not answer") from exc
