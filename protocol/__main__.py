"""`python -m protocol`: see protocol.cli."""

from __future__ import annotations

from protocol.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
