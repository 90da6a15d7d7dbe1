"""terminal_cli's board commands against the real device service on swtpm (loopback; the USB link is in
tests/integration): setup, unlock, status, wallet, lock, PIN change, and each device failure's exit code."""

from __future__ import annotations

import stat

import pytest

from tests.terminal.support import PIN, Board, Cli, free_port

pytestmark = [pytest.mark.swtpm, pytest.mark.integration]


def test_setup_unlock_status_lock(board: Board, cli: Cli) -> None:
    env = {"COFFER_DEVICE": board.url, "COFFER_PIN": PIN}
    before = cli.json("device", "status", env=env)
    assert before["phase"] == "not-set-up"
    assert "wallet" not in before

    set_up = cli.json("device", "setup", env=env)
    assert set_up["phase"] == "locked"
    device_id = set_up["device_id"]

    unlocked = cli.json("device", "unlock", env=env)
    assert unlocked["device_id"] == device_id
    token = cli.runtime_dir / f"device-{device_id}.token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert stat.S_IMODE(token.parent.stat().st_mode) == 0o700

    # Later commands use the stored token: no PIN needed.
    status = cli.json("device", "status", env={"COFFER_DEVICE": board.url})
    assert status["phase"] == "unlocked"
    assert status["wallet"]["enrolled"] is False
    wallet = cli.json("wallet", env={"COFFER_DEVICE": board.url})
    assert wallet["device_id"] == device_id
    assert wallet["purses"]["prepaid"] == {}

    human = cli.run("wallet", env={"COFFER_DEVICE": board.url})
    assert human.returncode == 0
    assert "state counter" in human.stdout

    cli.json("device", "lock", env={"COFFER_DEVICE": board.url})
    assert not token.exists()
    locked = cli.fails(23, "wallet", env={"COFFER_DEVICE": board.url})
    assert "locked" in locked.stderr
    assert "hint:" in locked.stderr


def test_wrong_pin_says_tries_left_and_a_dead_token_is_dropped(board: Board, cli: Cli) -> None:
    env = {"COFFER_DEVICE": board.url}
    cli.json("device", "setup", env=env | {"COFFER_PIN": PIN})
    wrong = cli.fails(24, "device", "unlock", env=env | {"COFFER_PIN": "999999"})
    assert "wrong PIN" in wrong.stderr
    assert "tries left" in wrong.stderr

    cli.json("device", "unlock", env=env | {"COFFER_PIN": PIN})
    board.stop()  # a restart locks the device: every token dies
    board.start()
    # The stored token is refused; with COFFER_PIN the CLI unlocks again by itself.
    assert cli.json("wallet", env=env | {"COFFER_PIN": PIN})["counter"] >= 0
    board.stop()
    board.start()
    cli.fails(23, "wallet", env=env)


def test_pin_change(board: Board, cli: Cli) -> None:
    env = {"COFFER_DEVICE": board.url, "COFFER_PIN": PIN}
    cli.json("device", "setup", env=env)
    cli.json("device", "unlock", env=env)
    assert cli.json("device", "pin", env=env | {"COFFER_NEW_PIN": "24682468"})["pin_changed"] is True
    cli.json("device", "lock", env=env)
    cli.fails(24, "device", "unlock", env=env)
    cli.json("device", "unlock", env=env | {"COFFER_PIN": "24682468"})


def test_weak_pin_and_locked_device_without_a_pin(board: Board, cli: Cli) -> None:
    env = {"COFFER_DEVICE": board.url}
    weak = cli.fails(2, "device", "setup", env=env | {"COFFER_PIN": "12"})
    assert "PIN" in weak.stderr
    cli.json("device", "setup", env=env | {"COFFER_PIN": PIN})
    cli.fails(23, "library", env=env)  # no token, no COFFER_PIN, stdin not a terminal


def test_tpm_lockout_says_retry_after(board: Board, cli: Cli) -> None:
    env = {"COFFER_DEVICE": board.url}
    cli.json("device", "setup", env=env | {"COFFER_PIN": PIN})
    codes = []
    for _ in range(12):
        result = cli.run("device", "unlock", env=env | {"COFFER_PIN": "000000"})
        codes.append(result.returncode)
        if result.returncode == 25:
            assert "retry after" in result.stderr
            break
    assert codes[-1] == 25, codes
    assert set(codes[:-1]) == {24}
    cli.fails(25, "device", "unlock", env=env | {"COFFER_PIN": PIN})  # even the right PIN


def test_unreachable_device_and_bad_urls(cli: Cli) -> None:
    port = free_port()  # nothing listens there
    cli.fails(21, "--device", f"http://127.0.0.1:{port}", "device", "status")
    cli.fails(2, "--device", "http://board.example:8470", "device", "status")  # a name, not the link address
    cli.fails(2, "--center", "http://shop.example", "catalog")  # plain http to a non-loopback center
    cli.fails(2, "--center", "ftp://127.0.0.1", "catalog")
