"""Fixtures for terminal_cli: a real board (device_os serve on swtpm) and the CLI in its own directories."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.terminal.support import PIN, Board, CenterServer, Cli


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "pc")


@pytest.fixture
def board(swtpm, tmp_path: Path) -> Iterator[Board]:
    made = Board(tmp_path / "board", swtpm.tcti)
    made.provision()
    made.start()
    yield made
    made.stop()


@pytest.fixture
def center(swtpm, tmp_path: Path) -> Iterator[CenterServer]:
    made = CenterServer(tmp_path / "center", swtpm.ca_bundle).build()
    made.start()
    yield made
    made.stop()


@dataclass
class Shop:
    """A real center and a real board, and a PC (the CLI) that set the board up and enrolled it."""

    center: CenterServer
    board: Board
    cli: Cli
    device_id: str

    def purchase(self, item_id: str, *args: str) -> Any:
        return self.cli.json("purchase", item_id, *args)


@pytest.fixture
def shop(center: CenterServer, board: Board, cli: Cli) -> Shop:
    cli.env |= {"COFFER_CENTER": center.url, "COFFER_DEVICE": board.url, "COFFER_PIN": PIN}
    device_id = cli.json("device", "setup")["device_id"]
    cli.json("device", "unlock")
    enrolled = cli.json("enroll")
    assert enrolled["device_id"] == device_id
    return Shop(center, board, cli, device_id)
