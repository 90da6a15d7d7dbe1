"""terminal_cli's memory stays flat while it moves 1 GiB from the center into the board (issue 13:
growth under 30 MB): peak RSS of `terminal_cli purchase` of a 1 GiB item against that of a 1 MiB item."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.terminal.conftest import Shop
from tests.terminal.support import ROOT

pytestmark = [pytest.mark.swtpm, pytest.mark.integration, pytest.mark.slow]

LIMIT = 30 * 1000 * 1000
PEAK = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)\n"
)


def _item(shop: Shop, tmp_path: Path, size: int, title: str) -> str:
    path = tmp_path / f"{title}.bin"
    with path.open("wb") as fh:
        block = os.urandom(1 << 20)
        for n in range(size // len(block)):
            fh.write(block[:-8] + n.to_bytes(8, "big"))
    trial = tmp_path / "trial.bin"
    trial.write_bytes(b"a trial file")
    item_id = shop.center.add_item([path], title, 1, preview=trial)
    path.unlink()
    return item_id


def _peak_rss(shop: Shop, item_id: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", PEAK, sys.executable, "-m", "terminal_cli", "purchase", item_id],
        cwd=ROOT,
        env=shop.cli.environ(),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    code, peak = result.stdout.split()[-2:]
    assert code == "0", result.stderr
    return int(peak)


def test_purchase_memory_is_flat_for_1_gib(shop: Shop, tmp_path: Path) -> None:
    small = _item(shop, tmp_path, 1 << 20, "small")
    big = _item(shop, tmp_path, 1 << 30, "big")
    baseline = _peak_rss(shop, small)
    peak = _peak_rss(shop, big)
    print(
        f"terminal_cli peak RSS: 1 MiB purchase {baseline / 1e6:.1f} MB, 1 GiB purchase {peak / 1e6:.1f} MB"
    )
    assert peak - baseline < LIMIT, (baseline, peak)
    library = {i["item_id"]: i for i in shop.cli.json("library")}
    assert library[big]["length"] == 1 << 30
