"""`make demo` (scripts/demo.py) runs all its stages to the end: the last one buys a catalog item on the
simulated board over the USB link and opens it, and the demo itself checks the opened bytes against the
catalog's SHA-256 (it exits non-zero otherwise)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.swtpm]

ROOT = Path(__file__).resolve().parents[2]


def test_demo_ends_with_an_opened_purchase(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "COFFER_DEMO_SERVE"}
    env |= {"COFFER_DEMO_DIR": str(tmp_path / "demo"), "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "scripts.demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for stage in ("(formats)", "(tpm)", "(center)", "(board)", "(purchase)", "demo finished"):
        assert stage in out
    assert "debits prepaid 500" in out
    assert "SHA-256 equal to the catalog's" in out
    assert "409 The order is already settled" in out
    assert "purses {'JPY': 500}" in out
    opened = list((tmp_path / "demo").glob("opened-*.mp4"))
    assert len(opened) == 1
    assert opened[0].read_bytes()[4:8] == b"ftyp"  # an MPEG-4 file, as registered
    assert not list((tmp_path / "demo").glob("*.cfs"))  # the order's stream file was removed
