"""Real parts for terminal_cli's tests: `device_os serve` on swtpm, the CLI as a subprocess in its own dirs.

The CLI always runs as its own process (`python -m terminal_cli`), with XDG config/state/runtime directories
inside the test's tmp_path, so exit codes, stdout/stderr and the files it keeps are what a user gets.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
PIN = "135790"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


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


@dataclass
class CenterServer:
    """The real center (`center serve`) with the sample catalog, trusting swtpm's EK CA, on 127.0.0.1."""

    data: Path
    ek_ca: Path
    welcome_credit: int = 1000
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    extra: tuple[str, ...] = ()
    issuer: str | None = None  # when served under another URL (HTTPS): admin commands sign with it too
    env: dict[str, str] = field(default_factory=dict)  # COFFER_CENTER_* settings of the server
    process: subprocess.Popen[bytes] | None = None
    item_ids: list[str] = field(default_factory=list)

    @property
    def listen(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.listen}"

    @property
    def admin_env(self) -> dict[str, str]:
        """Admin commands sign with the server's issuer (its listen address)."""
        issuer = {"COFFER_CENTER_ISSUER": self.issuer} if self.issuer else {}
        return {**os.environ, "COFFER_CENTER_LISTEN": self.listen, **issuer}

    def build(self) -> CenterServer:
        from center.demo import build_demo_catalog

        self.item_ids = build_demo_catalog(self.data, self.listen)
        return self

    def admin(self, *args: str) -> Any:
        """`center ARGS --data DATA --json` on the server host; its JSON answer."""
        result = subprocess.run(
            [sys.executable, "-m", "center", *args, "--data", str(self.data), "--json"],
            cwd=ROOT,
            env=self.admin_env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, f"center {args}: {result.stderr}"
        return json.loads(result.stdout) if result.stdout.strip().startswith(("{", "[")) else result.stdout

    def add_item(self, files: Sequence[Path], title: str, price: int, preview: Path | None = None) -> str:
        trial = ["--preview", str(preview)] if preview else []
        answer = self.admin(
            "item",
            "add",
            *map(str, files),
            "--title",
            title,
            "--price",
            str(price),
            "--currency",
            "JPY",
            *trial,
        )
        item_id: str = answer["item_id"]
        return item_id

    def credit(self, device_id: str, amount: int) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "center", "credit", "issue", "--device", device_id,
             "--prepaid", str(amount), "JPY", "--data", str(self.data)],
            cwd=ROOT, env=self.admin_env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def serve_argv(self) -> list[str]:
        return [
            sys.executable, "-m", "center", "serve", "--data", str(self.data), "--listen", self.listen,
            "--ek-ca", str(self.ek_ca), "--welcome-credit", str(self.welcome_credit), *self.extra,
        ]  # fmt: skip

    def start(self) -> CenterServer:
        self.process = subprocess.Popen(
            self.serve_argv(),
            cwd=ROOT,
            env={**os.environ, **self.env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_http(f"{self.url}/v1/health", self.process)
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None
