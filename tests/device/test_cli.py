"""`device_os provision` / `device_os status` on a real swtpm."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.swtpm import SwtpmInstance

pytestmark = pytest.mark.swtpm
REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "device_os", *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )


def test_provision_and_status(swtpm: SwtpmInstance, tmp_path: Path) -> None:
    data = tmp_path / "data"
    before = run("status", "--data", str(data), "--tcti", swtpm.tcti)
    assert before.returncode == 0, before.stderr
    assert json.loads(before.stdout)["phase"] == "not-provisioned"
    first = run("provision", "--data", str(data), "--tcti", swtpm.tcti)
    assert first.returncode == 0, first.stderr
    status = json.loads(first.stdout)
    assert status["phase"] == "not-set-up"
    assert status["device_id"].startswith("dev_")
    assert status["max_tries"] == 10
    again = run("provision", "--data", str(data), "--tcti", swtpm.tcti)
    assert json.loads(again.stdout) == status  # idempotent: same device, same counter
    after = run("status", "--data", str(data), "--tcti", swtpm.tcti)
    assert json.loads(after.stdout) == status
    assert run("status").returncode == 2
    swtpm.kill()
    down = run("status", "--data", str(data), "--tcti", swtpm.tcti)
    assert down.returncode == 1
    assert "Tpm" in down.stderr
