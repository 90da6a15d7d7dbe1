"""Fixtures for terminal_cli: a real board (device_os serve on swtpm) and the CLI in its own directories."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.terminal.support import Board, Cli


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
