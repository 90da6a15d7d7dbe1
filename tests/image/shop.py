"""The rest of the world for the QEMU board: a real center (`center serve`, the sample catalog, swtpm's EK CA
trusted) and the user's PC (`terminal_cli` processes), both in the host namespace of tests/image/qemu.py, so
the PC reaches the board at its real address over QEMU's forward and the guest's USB link."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.image.artifacts import REPO
from tests.image.qemu import BOARD_URL, entered
from tests.support.center import RealCenter

CENTER_HOST, CENTER_PORT = "127.0.0.1", 8080  # inside the test's own namespace: nothing else listens there
WELCOME_CREDIT = 500


@dataclass
class Center:
    url: str
    data: Path
    root_fingerprint: str
    server: RealCenter


@contextlib.contextmanager
def center(namespace: str, ek_ca: Path, workdir: Path) -> Iterator[Center]:
    """The shared real center (tests/support/center.py), born in `namespace` with the sample catalog."""
    server = RealCenter(
        workdir / "center",
        ek_ca,
        welcome_credit=WELCOME_CREDIT,
        host=CENTER_HOST,
        port=CENTER_PORT,
        log=workdir / "center.log",
    ).build()
    try:
        with entered(namespace):
            server.start(timeout=120)
            known = httpx.get(f"{server.url}/.well-known/coffer", timeout=5, trust_env=False).json()
        yield Center(server.url, server.data, known["root_fingerprint"], server)
    finally:
        server.stop()


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
        return self.center.server.credit(device_id, amount)
