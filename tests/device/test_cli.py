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


def test_every_command_takes_the_same_settings(swtpm: SwtpmInstance, tmp_path: Path) -> None:
    """One way to configure the device: `provision` and `status` read the EnvironmentFile as `serve` does
    (before, they knew only --data/--tcti and their two variables), options win over it, and a bad setting
    is exit 2 with one line naming it."""
    data = tmp_path / "data"
    conf = tmp_path / "coffer.conf"
    conf.write_text(f"# coffer.conf\nCOFFER_DEVICE_DATA_DIR={data}\nCOFFER_DEVICE_TCTI={swtpm.tcti}\n")
    first = run("provision", "--config", str(conf))
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["phase"] == "not-set-up"
    assert json.loads(run("status", "--config", str(conf)).stdout) == json.loads(first.stdout)
    elsewhere = run("status", "--config", str(conf), "--data", str(tmp_path / "other"))
    assert json.loads(elsewhere.stdout)["phase"] == "not-provisioned"  # the option wins over the file
    conf.write_text(conf.read_text() + "COFFER_DEVICE_AUTO_LOCK_SECONDS=-5\n")
    for command in ("provision", "status", "serve"):
        bad = run(command, "--config", str(conf))
        assert bad.returncode == 2
        assert "auto_lock_seconds" in bad.stderr
        assert "-5" not in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1
    missing = run("status", "--config", str(tmp_path / "absent.conf"))
    assert missing.returncode == 2
