"""Engine and sessions: SQLite in WAL mode by default, PostgreSQL through psycopg 3; Alembic upgrades."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
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
