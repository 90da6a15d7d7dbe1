"""Entry point of `center` (console script and `python -m center`)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from center.cli.app import run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
