"""Entry point of `terminal_cli` (thin: the commands live in terminal_cli.commands)."""

from __future__ import annotations

from terminal_cli.cli import main

if __name__ == "__main__":
    main()
