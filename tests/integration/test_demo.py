"""`make demo` (scripts/demo.py) runs to the end with real parts only: the center with swtpm's EK CA, the
board on its simulated USB link, and the real `terminal_cli` commands a user types, ending in a purchase that
is opened and checked against the catalog's SHA-256 (the demo exits non-zero otherwise)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.swtpm]

ROOT = Path(__file__).resolve().parents[2]


def test_demo_ends_with_an_opened_purchase(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "COFFER_DEMO_SERVE" and not k.startswith("COFFER_")}
    env |= {"COFFER_DEMO_DIR": str(tmp_path / "demo"), "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "scripts.demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for stage in ("(formats)", "(tpm)", "(center)", "(board)", "(terminal)", "demo finished"):
        assert stage in out
    # every step is a typed command, and the ones shown failing fail with their documented codes
    for command in (
        "device setup",
        "device unlock",
        "enroll",
        "redeem cc_",
        "catalog",
        "purchase itm_",
        "open itm_",
        "wallet",
    ):
        assert f"terminal_cli {command}" in out
    assert "error: device: wrong PIN (9 tries left)\n(exit 24)" in out
    assert "already in the library" in out
    assert "(exit 30)" in out
    assert "attestation         EK certificate, TPM2_Certify and credential activation accepted" in out
    assert "debits: prepaid 500" in out
    assert "SHA-256 equal to the catalog's" in out
    assert "prepaid JPY         1000" in out  # 500 welcome + 1000 redeemed - 500 paid
    assert "matches the center's ledger" in out
    opened = list((tmp_path / "demo").glob("opened-*.mp4"))
    assert len(list((tmp_path / "demo").glob("again-*.mp4"))) == 1
    assert len(opened) == 1
    assert opened[0].read_bytes()[4:8] == b"ftyp"  # an MPEG-4 file, as registered
    # the PC kept its files inside the demo's directory: the token 0600, the purchase journal emptied
    (token,) = (tmp_path / "demo" / "pc" / "runtime" / "coffer").glob("device-*.token")
    assert token.stat().st_mode & 0o777 == 0o600
    assert not list((tmp_path / "demo" / "pc" / "state" / "coffer" / "purchases").rglob("*.json"))
