"""The one settings class: placeholders refused, TLS pairs, plain HTTP only on loopback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from center.errors import ConfigError
from center.settings import CenterSettings


def test_placeholder_database_password_is_refused(make_settings: Callable[..., CenterSettings]) -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        make_settings(database_url="postgresql://coffer:changethis@db.example/coffer")
    ok = make_settings(database_url="postgresql://coffer:s3cr3t-long@db.example/coffer")
    assert "s3cr3t" not in repr(ok)


def test_tls_needs_both_files(make_settings: Callable[..., CenterSettings], tmp_path: object) -> None:
    with pytest.raises(ValidationError):
        make_settings(tls_cert="cert.pem")


@pytest.mark.parametrize("listen", ["0.0.0.0:8443", "192.0.2.1:80", "[::]:8443", "example.org:80"])
def test_plain_http_only_on_loopback(make_settings: Callable[..., CenterSettings], listen: str) -> None:
    with pytest.raises(ConfigError, match="plain HTTP"):
        make_settings(listen=listen).check_serving()


@pytest.mark.parametrize("listen", ["127.0.0.1:8440", "[::1]:8440", "localhost:1"])
def test_loopback_is_fine(make_settings: Callable[..., CenterSettings], listen: str) -> None:
    assert make_settings(listen=listen).check_serving()[1] in (8440, 1)


def test_issuer_follows_listen_and_tls(make_settings: Callable[..., CenterSettings]) -> None:
    assert make_settings(listen="127.0.0.1:9000").issuer_url() == "http://127.0.0.1:9000"
    assert make_settings(issuer="https://center.example/").issuer_url() == "https://center.example"


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("COFFER_CENTER_DATA_DIR", "/srv/coffer")
    monkeypatch.setenv("COFFER_CENTER_LISTEN", "127.0.0.1:1234")
    s = CenterSettings()
    assert str(s.data_dir) == "/srv/coffer"
    assert s.listen == "127.0.0.1:1234"


def test_sqlite_commits_are_durable_unless_told_otherwise(
    make_settings: Callable[..., CenterSettings], tmp_path: Path
) -> None:
    """WAL with synchronous=FULL by default (a commit survives a power loss); `normal` only when asked."""
    from sqlalchemy import text

    from center.db.engine import make_engine

    default = make_settings()
    assert default.sqlite_synchronous == "full"
    for choice, level in (("full", 2), ("normal", 1)):
        engine = make_engine(f"sqlite:///{tmp_path / (choice + '.db')}", sqlite_synchronous=choice)
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA synchronous")).scalar() == level
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        engine.dispose()
    with pytest.raises(ValidationError):
        make_settings(sqlite_synchronous="off")
    with pytest.raises(ConfigError, match="synchronous"):
        make_engine(f"sqlite:///{tmp_path / 'x.db'}", sqlite_synchronous="off")
