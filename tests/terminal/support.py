"""Real parts for terminal_cli's tests: `device_os serve` on swtpm, the CLI as a subprocess in its own dirs,
and the real center (`CenterServer`, tests/support/center.py's `RealCenter`).

The CLI always runs as its own process (`python -m terminal_cli`), with XDG config/state/runtime directories
inside the test's tmp_path, so exit codes, stdout/stderr and the files it keeps are what a user gets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.center import ROOT, RealCenter, free_port, stop, wait_http

#: The real center's launcher, shared by every test (tests/support/center.py), under its terminal tests' name.
CenterServer = RealCenter
PIN = "135790"


@dataclass
class Board:
    """`device_os serve` on a swtpm, bound to 127.0.0.1:port (the simulated link is tests/integration)."""

    data: Path
    tcti: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def provision(self) -> None:
        subprocess.run(
            [sys.executable, "-m", "device_os", "provision", "--data", str(self.data), "--tcti", self.tcti],
            check=True,
            capture_output=True,
            cwd=ROOT,
        )

    def start(self, env: Mapping[str, str] | None = None) -> Board:
        argv = ["serve", "--data", str(self.data), "--tcti", self.tcti, "--listen", f"127.0.0.1:{self.port}"]
        # No pinned root: like a simulated board (scripts/usblink.py), it trusts the first center it enrolls.
        environ = {**os.environ, "COFFER_DEVICE_TRUST_FIRST_CENTER": "1", **(env or {})}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "device_os", *argv],
            cwd=ROOT,
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_http(f"{self.url}/v1/health", self.process)
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@dataclass
class Cli:
    """`python -m terminal_cli` with its own XDG directories and environment."""

    home: Path
    env: dict[str, str] = field(default_factory=dict)
    #: Runs the CLI through this (e.g. `ip netns exec NS`, `umockdev-run -d FILE --`).
    prefix: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("config", "state", "runtime"):
            (self.home / name).mkdir(mode=0o700, parents=True, exist_ok=True)

    @property
    def runtime_dir(self) -> Path:
        return self.home / "runtime" / "coffer"

    @property
    def state_dir(self) -> Path:
        return self.home / "state" / "coffer"

    def environ(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("COFFER_")}
        base |= {
            "XDG_CONFIG_HOME": str(self.home / "config"),
            "XDG_STATE_HOME": str(self.home / "state"),
            "XDG_RUNTIME_DIR": str(self.home / "runtime"),
            "COLUMNS": "200",
        }
        return base | self.env | dict(extra or {})

    def run(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.prefix, sys.executable, "-m", "terminal_cli", *args],
            cwd=ROOT,
            env=self.environ(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    def popen(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "terminal_cli", *args],
            cwd=ROOT,
            env=self.environ(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )

    def json(self, *args: str, env: Mapping[str, str] | None = None) -> Any:
        result = self.run("--json", *args, env=env)
        assert result.returncode == 0, f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        return json.loads(result.stdout)

    def fails(
        self, code: int, *args: str, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run and require exit `code`, one error line on stderr, nothing on stdout."""
        result = self.run(*args, env=env)
        assert result.returncode == code, f"{args}: exit {result.returncode}, wanted {code}\n{result.stderr}"
        assert result.stdout == ""
        assert result.stderr.startswith("error: "), result.stderr
        return result


def run_all(cli: Cli, commands: Sequence[Sequence[str]]) -> list[Any]:
    return [cli.json(*c) for c in commands]
