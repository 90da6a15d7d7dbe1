"""Run every benchmark module in bench/ (or those named) and print their JSON lines.

python -m bench                 # all
python -m bench stream hpke     # some
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
import time
from pathlib import Path


def _modules() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or _modules()
    unknown = sorted(set(names) - set(_modules()))
    if unknown:
        print(
            f"bench: no benchmark named {', '.join(unknown)} (have: {', '.join(_modules())})", file=sys.stderr
        )
        return 2
    status = 0
    for name in names:
        started = time.perf_counter()
        module = importlib.import_module(f"bench.{name}")
        rc = int(module.main([]))
        print(
            json.dumps(
                {"bench": name, "done": True, "rc": rc, "seconds": round(time.perf_counter() - started, 2)}
            )
        )
        sys.stdout.flush()
        status = status or rc
    return status


if __name__ == "__main__":
    sys.exit(main())
