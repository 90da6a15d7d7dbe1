"""`make demo`, the last stage: the commands a user types, run for real against the real center and the board.

Every step is `terminal_cli` (or, for the seller's credit code, `center credit issue` on the server host) as a
separate process, printed as it would be typed. The PC's settings are environment variables and the PC's
files live under the demo's directory (XDG_CONFIG_HOME, XDG_STATE_HOME, XDG_RUNTIME_DIR), so the user's own
configuration is never touched. The demo checks what it can see from outside: exit codes, and the opened
file's SHA-256 against the catalog's.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Pc:
    """The user's PC: terminal_cli with the demo's settings and directories."""

    console: Console
    home: Path
    center: str
    device: str
    pin: str

    def __post_init__(self) -> None:
        for name in ("config", "state", "runtime"):
            (self.home / name).mkdir(mode=0o700, parents=True, exist_ok=True)

    @property
    def environ(self) -> dict[str, str]:
        return {
            "XDG_CONFIG_HOME": str(self.home / "config"),
            "XDG_STATE_HOME": str(self.home / "state"),
            "XDG_RUNTIME_DIR": str(self.home / "runtime"),
            "COFFER_CENTER": self.center,
            "COFFER_DEVICE": self.device,
            "COFFER_PIN": self.pin,
        }

    def _env(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        return {**os.environ, **self.environ, "COFFER_PROGRESS": "1", **(extra or {})}

    def type(self, *args: str, expect: int = 0, env: Mapping[str, str] | None = None) -> None:
        """Run `terminal_cli ARGS` as typed, its output shown as is; stop the demo on another exit code."""
        shown = " ".join(f"{k}={v}" for k, v in (env or {}).items())
        self.console.print(f"\n[bold cyan]$[/] {shown + ' ' if shown else ''}terminal_cli {shlex.join(args)}")
        sys.stdout.flush()
        code = subprocess.run(
            [sys.executable, "-m", "terminal_cli", *args],
            cwd=ROOT,
            env=self._env(env),
            stderr=subprocess.STDOUT,  # errors and progress in the story, where the user would see them
            check=False,
        ).returncode
        if code != 0:
            self.console.print(f"[dim](exit {code})[/]")
        if code != expect:
            raise SystemExit(f"demo: `terminal_cli {shlex.join(args)}` ended with {code}, expected {expect}")

    def ask(self, *args: str) -> Any:
        """`terminal_cli --json ARGS`, quietly: what the demo needs to know (an item id, a hash)."""
        result = subprocess.run(
            [sys.executable, "-m", "terminal_cli", "--json", *args],
            cwd=ROOT,
            env=self._env(None),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise SystemExit(f"demo: `terminal_cli {' '.join(args)}` failed: {result.stderr.strip()}")
        return json.loads(result.stdout)


def issue_credit(console: Console, center_data: Path, center_url: str, device_id: str, amount: int) -> str:
    """The seller's side, on the server host: a one-time code for a prepaid credit."""
    argv = ["credit", "issue", "--device", device_id, "--prepaid", str(amount), "JPY"]
    console.print(f"\n[bold magenta]seller$[/] center {shlex.join(argv)}")
    result = subprocess.run(
        [sys.executable, "-m", "center", *argv, "--data", str(center_data)],
        cwd=ROOT,
        env={**os.environ, "COFFER_CENTER_LISTEN": center_url.split("://", 1)[1]},  # the server's issuer
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"demo: center credit issue failed: {result.stderr.strip()}")
    code = result.stdout.strip()
    console.print(code)
    return code


def run(
    console: Console, *, pc: Pc, center_data: Path, work: Path, item_title: str = "Moving shapes"
) -> dict[str, Any]:
    console.print(
        "  the PC's settings (a real board is found on USB; here the link is simulated):\n"
        + "".join(f"    {k}={v}\n" for k, v in pc.environ.items() if k.startswith("COFFER_"))
        + "  (without COFFER_PIN the PIN is typed without echo)"
    )
    pc.type("device", "status")
    pc.type("device", "setup")
    pc.type("device", "unlock", env={"COFFER_PIN": "000000"}, expect=24)
    pc.type("device", "unlock")
    pc.type("enroll")
    device_id = pc.ask("device", "status")["device_id"]
    code = issue_credit(console, center_data, pc.center, device_id, 1000)
    pc.type("redeem", code)
    pc.type("catalog")
    item = next(i for i in pc.ask("catalog") if i["title"] == item_title)
    pc.type("show", item["item_id"])
    opened = work / f"opened-{item['item_id']}.mp4"
    pc.type("purchase", item["item_id"], "-o", str(opened))
    digest = hashlib.sha256(opened.read_bytes()).hexdigest()
    if digest != item["content_sha256"]:
        raise SystemExit("demo: the opened content differs from the catalog's")
    console.print(f"[dim]  (the demo checked: {opened.name} has a SHA-256 equal to the catalog's)[/]")
    pc.type("purchase", item["item_id"], expect=30)
    pc.type("library")
    again = work / f"again-{item['item_id']}.mp4"
    pc.type(
        "open", item["item_id"], "-o", str(again)
    )  # out of the board's vault again, decrypted as it streams
    if hashlib.sha256(again.read_bytes()).hexdigest() != item["content_sha256"]:
        raise SystemExit("demo: the content opened again differs from the catalog's")
    pc.type("wallet")
    pc.type("receipts")
    pc.type("sync")
    return {"device_id": device_id, "item": item, "opened": opened}


__all__ = ["Pc", "issue_credit", "run"]
