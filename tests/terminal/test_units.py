"""terminal_cli's pure parts: the exit-code table, problem mapping, URL rules, secret files, settings,
journal."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from protocol.problems import REGISTRY, problem_body
from terminal_cli import config, errors
from terminal_cli._http import check_center_url, check_device_url
from terminal_cli.journal import Journal


def test_named_failures_have_distinct_codes_apart_from_the_registry() -> None:
    codes = [code for code, _, _ in errors.NAMED_FAILURES]
    assert len(codes) == len(set(codes))
    assert not set(codes) & {t.exit_code for t in REGISTRY.values()}
    assert not set(codes) & {0, 1, 2, 130}


@pytest.mark.parametrize(
    ("origin", "slug", "cls", "code"),
    [
        ("device", "wrong-pin", errors.WrongPin, 24),
        ("device", "pin-lockout", errors.PinLockout, 25),
        ("device", "unauthorized", errors.DeviceLocked, 23),
        ("center", "unauthorized", errors.DeviceUnknownToCenter, 28),
        ("device", "device-tampered", errors.DeviceTampered, 26),
        ("center", "device-revoked", errors.DeviceRevoked, 27),
        ("center", "insufficient-funds", errors.InsufficientFunds, 29),
        ("device", "insufficient-funds", errors.InsufficientFunds, 29),
        ("device", "already-owned", errors.AlreadyOwned, 30),
        ("device", "message-expired", errors.OrderExpired, 31),
        ("device", "corrupt-content", errors.ProblemError, 12),
        ("center", "not-found", errors.ProblemError, 4),
        ("center", "unpaid-limit", errors.ProblemError, 9),
    ],
)
def test_problem_types_map_to_errors_and_codes(origin, slug, cls, code) -> None:  # type: ignore[no-untyped-def]
    err = errors.from_problem(origin, problem_body(slug, "why"), REGISTRY[slug].status)
    assert type(err) is cls
    assert err.code == code
    assert str(err).startswith(f"{origin}: ")


def test_problem_extensions_and_unknown_bodies() -> None:
    wrong = errors.from_problem("device", problem_body("wrong-pin", tries_left=2), 401)
    assert str(wrong) == "device: wrong PIN (2 tries left)"
    lockout = errors.from_problem("device", problem_body("pin-lockout", retry_after=600), 423)
    assert "retry after 600 s" in str(lockout)
    unknown = errors.from_problem("center", {"type": "urn:other", "title": "Odd", "status": 418}, 418)
    assert unknown.code == 1
    garbage = errors.from_problem("center", {"status": "x"}, 500)
    assert str(garbage) == "center: HTTP 500"


def test_url_rules() -> None:
    assert check_center_url("https://shop.example/") == "https://shop.example"
    assert check_center_url("http://127.0.0.1:8440") == "http://127.0.0.1:8440"
    assert check_center_url("http://[::1]:8440") == "http://[::1]:8440"
    assert check_center_url("http://localhost:8440") == "http://localhost:8440"
    for bad in ("http://shop.example", "http://10.0.0.1", "https://shop.example/api", "file:///x", "shop"):
        with pytest.raises(errors.UsageError):
            check_center_url(bad)
    assert check_device_url("http://10.213.0.2:8470/") == "http://10.213.0.2:8470"
    assert check_device_url("http://169.254.7.1:8470") == "http://169.254.7.1:8470"
    for bad in ("http://board.local:8470", "http://8.8.8.8:8470", "http://10.0.0.2:8470/v1"):
        with pytest.raises(errors.UsageError):
            check_device_url(bad)


def _paths(tmp_path: Path) -> config.Paths:
    return config.Paths(tmp_path / "config", tmp_path / "state", tmp_path / "runtime")


def test_secret_files_are_private(tmp_path: Path) -> None:
    path = config.device_token_path(_paths(tmp_path), "dev_x")
    config.write_private(path, "token-value")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert config.read_secret(path) == "token-value"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left
    path.chmod(0o644)
    with pytest.raises(errors.UsageError):
        config.read_secret(path)
    config.drop_secret(path)
    config.drop_secret(path)
    assert config.read_secret(path) is None


def test_settings_precedence_and_config_errors(tmp_path: Path) -> None:
    paths = _paths(tmp_path)
    paths.config_dir.mkdir()
    paths.config_file.write_text('center = "https://file.example"\ndevice = "http://10.0.0.2:8470"\n')
    env = {"COFFER_CENTER": "https://env.example"}
    chosen = config.load_settings(paths, center=None, device=None, environ=env)
    assert (chosen.center, chosen.device) == ("https://env.example", "http://10.0.0.2:8470")
    chosen = config.load_settings(paths, center="https://opt.example", device=None, environ=env)
    assert chosen.center == "https://opt.example"
    paths.config_file.write_text('centre = "typo"\n')
    with pytest.raises(errors.UsageError, match="unknown setting"):
        config.load_settings(paths, center=None, device=None, environ={})
    paths.config_file.write_text("center = [")
    with pytest.raises(errors.UsageError):
        config.load_settings(paths, center=None, device=None, environ={})


def test_journal_steps_survive_a_new_process_view(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    entry = journal.begin(
        device_id="dev_x", item_id="itm_a", center="https://c", mode="now", repurchase=False
    )
    again = Journal(tmp_path).get("dev_x", "itm_a")
    assert again == entry
    assert entry.key.startswith("pk_")
    entry = journal.update(entry, order_id="ord_1", order="a.b.c", content_url="/v1/orders/ord_1/content")
    assert [e.order_id for e in Journal(tmp_path).pending("dev_x")] == ["ord_1"]
    journal.finish(entry)
    assert list(journal.pending("dev_x")) == []
    (tmp_path / "purchases" / "dev_x" / "itm_b.json").write_text("{not json")
    with pytest.raises(errors.UsageError, match="unreadable"):
        journal.get("dev_x", "itm_b")
    assert os.listdir(tmp_path / "purchases" / "dev_x") == ["itm_b.json"]


def test_help_lists_every_exit_code() -> None:
    import subprocess
    import sys

    from tests.terminal.support import ROOT

    shown = subprocess.run(
        [sys.executable, "-m", "terminal_cli", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    for code, name, _ in errors.NAMED_FAILURES:
        assert f"{code:>3}  {name}" in shown
    docs = (ROOT / "docs" / "terminal.md").read_text()
    for code, _, _ in errors.NAMED_FAILURES:
        assert f"\n| {code} |" in docs
