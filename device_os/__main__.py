"""Entry point of `device_os`: not implemented yet (its issue has not landed)."""

from __future__ import annotations

import sys


def main() -> None:
    print("device_os: not implemented yet", file=sys.stderr)
    sys.exit(3)


if __name__ == "__main__":
    main()
