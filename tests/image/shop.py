"""The rest of the world for the QEMU board: a real center (`center serve`, the sample catalog, swtpm's EK CA
trusted) and the user's PC (`terminal_cli` processes), both in the host namespace of tests/image/qemu.py, so
the PC reaches the board at its real address over QEMU's forward and the guest's USB link."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.image.artifacts import REPO
from tests.image.qemu import BOARD_URL, entered

CENTER_LISTEN = "127.0.0.1:8080"  # inside the test's own namespace: nothing else listens there
WELCOME_CREDIT = 500


@dataclass
class Center:
    url: str
    data: Path
    root_fingerprint: str
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def center(namespace: str, ek_ca: Path, workdir: Path) -> Iterator[Center]:
    from center.demo import build_demo_catalog

    data = workdir / "center"
    build_demo_catalog(data, CENTER_LISTEN)
    serve = ["serve", "--data", str(data), "--listen", CENTER_LISTEN, "--ek-ca", str(ek_ca)]
    serve += ["--welcome-credit", str(WELCOME_CREDIT)]
    url = f"http://{CENTER_LISTEN}"
    with entered(namespace), (workdir / "center.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "center", *serve], cwd=REPO, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 120
        known: dict[str, Any] | None = None
        while known is None:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"center serve did not start: {(workdir / 'center.log').read_text()[-2000:]}"
                )
            try:
                with entered(namespace):
                    known = httpx.get(f"{url}/.well-known/coffer", timeout=5, trust_env=False).json()
            except httpx.TransportError:
                time.sleep(0.5)
        yield Center(url, data, known["root_fingerprint"], process)
    finally:
        process.terminate()
        process.wait(timeout=30)


@dataclass
class Pc:
    """terminal_cli as the user types it, with the PC's files under `home`."""

    namespace: str
    home: Path
    center: Center
    pin: str

    def environ(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        for name in ("config", "state", "runtime"):
            (self.home / name).mkdir(mode=0o700, parents=True, exist_ok=True)
        return {
            **os.environ,
            "XDG_CONFIG_HOME": str(self.home / "config"),
            "XDG_STATE_HOME": str(self.home / "state"),
            "XDG_RUNTIME_DIR": str(self.home / "runtime"),
            "COFFER_CENTER": self.center.url,
            "COFFER_DEVICE": BOARD_URL,
            "COFFER_PIN": self.pin,
            **(extra or {}),
        }

    def run(self, *args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        with entered(self.namespace):
            return subprocess.run(
                [sys.executable, "-m", "terminal_cli", *args],
                cwd=REPO,
                env=self.environ(extra),
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.returncode == 0, f"terminal_cli {' '.join(args)}: {result.returncode}\n{result.stderr}"
        return result.stdout

    def ask(self, *args: str) -> Any:
        return json.loads(self.ok("--json", *args))

    def issue_credit(self, device_id: str, amount: int) -> str:
        """The seller's side on the server host: `center credit issue` (a one-time code)."""
        argv = ["credit", "issue", "--device", device_id, "--prepaid", str(amount), "JPY"]
        result = subprocess.run(
            [sys.executable, "-m", "center", *argv, "--data", str(self.center.data)],
            cwd=REPO,
            env={**os.environ, "COFFER_CENTER_LISTEN": CENTER_LISTEN},
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()
