"""Board commands: `devices`, `device setup|unlock|lock|pin|status`, `enroll`, `doctor`."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Annotated, Any

import typer

from terminal_cli import config, render
from terminal_cli.cli import app, command, device_app, session
from terminal_cli.discovery import Board, find_boards, wait_for_board
from terminal_cli.errors import DeviceLocked, DeviceTampered, TerminalError, UsageError
from terminal_cli.render import View
from terminal_cli.session import Session


def _boards_view(boards: list[Board]) -> View:
    def draw() -> Any:
        if not boards:
            return "no board found (plug one in, or wait for it with --wait)"
        rows = [(b.device_id, b.interface, b.driver, b.address, b.url) for b in boards]
        return render.table(["device_id", "interface", "driver", "board address", "URL"], rows)

    return View([b.as_json() for b in boards], draw)


@command(app, "devices")
def devices(
    wait: Annotated[bool, typer.Option("--wait", help="Wait for a board to be plugged in")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait")] = 60.0,
) -> View:
    """Boards plugged in over USB (their device_id, interface and address)."""

    def waiting() -> None:
        render.err.print(f"waiting up to {timeout:.0f} s for a board to be plugged in…")

    boards = [wait_for_board(timeout, on_wait=waiting)] if wait else find_boards()
    return _boards_view(boards)


def _new_pin(env: str, prompt: str) -> str:
    value = os.environ.get(env)
    if value:
        return value
    first = session().pin_reader(prompt)
    if session().pin_reader("again: ") != first:
        raise UsageError("the two PINs differ")
    return first


@command(device_app, "setup")
def setup() -> View:
    """First use: choose a PIN (6-32 digits; COFFER_PIN for scripts); keys are created in the TPM."""
    s = session()
    pin = _new_pin("COFFER_PIN", "choose a PIN (6-32 digits): ")
    health = s.device.setup(pin)
    return View(health, lambda: f"device {health.device_id} is set up ({health.phase}); unlock it to use it")


@command(device_app, "unlock")
def unlock() -> View:
    """Unlock with the PIN; the token stays 0600 in your runtime directory until `device lock`."""
    s = session()
    seconds = s.unlock()
    data = {"device_id": s.device_id(), "auto_lock_seconds": seconds}
    return View(data, lambda: f"device {data['device_id']} unlocked (auto-lock after {seconds} s idle)")


@command(device_app, "lock")
def lock() -> View:
    """Lock the board (its DEK and keys leave RAM; every token dies)."""
    s = session()
    device = s.device
    device.token = config.read_secret(s.token_path())
    if device.token is not None:
        with contextlib.suppress(DeviceLocked):  # already locked (auto-lock, restart): nothing to do
            device.lock()
    s.forget_token()
    return View({"device_id": s.device_id(), "phase": "locked"}, lambda: "device locked")


@command(device_app, "pin")
def change_pin() -> View:
    """Change the PIN (old one from COFFER_PIN or typed, new one from COFFER_NEW_PIN or typed twice)."""
    s = session()
    device = s.unlocked_device()
    old = s.pin_reader("current PIN: ") if not os.environ.get("COFFER_PIN") else os.environ["COFFER_PIN"]
    new = _new_pin("COFFER_NEW_PIN", "new PIN (6-32 digits): ")
    device.change_pin(old, new)
    return View({"device_id": s.device_id(), "pin_changed": True}, lambda: "PIN changed")


@command(device_app, "status")
def status() -> View:
    """Phase, tamper state and (if unlocked here) the wallet."""
    s = session()
    health = s.health()
    data: dict[str, Any] = {"url": s.device.base_url, **health.model_dump(mode="json")}
    token = config.read_secret(s.token_path()) if health.device_id else None
    if token is not None:
        s.device.token = token
        try:
            data["wallet"] = s.device.wallet().model_dump(mode="json")
        except DeviceLocked:
            s.forget_token()
        except DeviceTampered:
            pass  # health says so already

    def draw() -> Any:
        rows = [(k, v) for k, v in data.items() if k != "wallet"]
        if "wallet" in data:
            w = data["wallet"]
            rows += [
                ("enrolled", w["enrolled"]),
                ("prepaid", w["purses"]["prepaid"]),
                ("outbox", len(w["outbox"])),
            ]
        return render.pairs(rows)

    return View(data, draw)


@command(app, "enroll")
def enroll() -> View:
    """Enroll the board with the center: TPM attestation relayed both ways, the welcome credit applied."""
    s = session()
    device = s.unlocked_device()
    center = s.center
    identity = device.identity()
    challenge = center.register_device(identity)
    secret = device.activate(challenge.credential_blob, challenge.encrypted_secret)
    answer = center.activate_device(challenge.device_id, challenge.challenge_id, secret)
    config.write_private(s.center_token_path(answer.device_id), answer.device_token)
    accepted = device.enroll(answer.enrollment, answer.root_jwk.model_dump())
    welcome: dict[str, Any] | None = None
    if answer.welcome_credit is not None:
        try:
            welcome = device.apply_credit(answer.welcome_credit)
        except TerminalError as exc:  # applied at an earlier enrollment: not an error here
            if getattr(exc, "slug", "") != "credit-already-applied":
                raise
    wallet = device.wallet()
    data = {
        "device_id": answer.device_id,
        "center": center.base_url,
        "keyset_version": answer.keyset_version,
        "root_fingerprint": accepted.get("root_fingerprint"),
        "welcome_credit": welcome,
        "prepaid": wallet.purses.prepaid,
    }

    def draw() -> Any:
        rows: list[tuple[str, Any]] = [
            ("device", answer.device_id),
            ("center", center.base_url),
            ("center root pinned", data["root_fingerprint"]),
            ("attestation", "EK certificate, TPM2_Certify and credential activation accepted"),
            ("welcome credit", "applied" if welcome else "none"),
            ("prepaid", render.purse(wallet.purses.prepaid)),
        ]
        return render.pairs(rows, title="enrolled")

    return View(data, draw)


def _pinning(s: Session, center_root: str, check: Callable[[str, bool | None, str], None]) -> None:
    """Does the board trust this center's root (DESIGN.md flow 3: pinned, or first use where allowed)?"""
    health = s.health()
    if health.root_pinning == "none":
        reason = "no pinned root and no trust on first use: enrollment refused until its image names a root"
        check("center root", False, reason)
        return
    if health.root_pinning == "pinned":
        pinned = s.device.identity().get("pinned_root_fingerprint")
        same = pinned == center_root
        detail = "pinned to this center" if same else f"pinned to another center ({str(pinned)[:16]}…)"
        check("center root", same, detail)
        return
    if health.root_pinning == "trust-first":
        check("center root", True, "the board trusts the first center it enrolls with (demo and tests)")


@command(app, "doctor")
def doctor() -> View:
    """What is found, reachable, unlocked, enrolled and pinned, and why not."""
    s = session()
    checks: list[dict[str, str]] = []

    def check(name: str, ok: bool | None, detail: str) -> None:
        checks.append({"check": name, "status": {True: "ok", False: "fail", None: "-"}[ok], "detail": detail})

    paths = s.settings.paths
    check("config file", None, str(paths.config_file) + ("" if paths.config_file.exists() else " (absent)"))
    try:
        boards = find_boards()
        found = ", ".join(f"{b.device_id} at {b.url}" for b in boards) or "none found"
        named = s.settings.device is not None  # --device / COFFER_DEVICE: discovery is not needed
        check("USB boards", True if boards else (None if named else False), found)
    except Exception as exc:  # udev missing (macOS, Windows, containers) is a finding here
        check("USB boards", None, f"discovery unavailable: {exc}")
    try:
        health = s.health()
        check(
            "device",
            health.phase not in ("tampered", "not-provisioned"),
            f"{s.device.base_url}: {health.device_id} {health.phase}"
            + (f" (tampered: {health.tamper_reason})" if health.tampered else ""),
        )
        token = config.read_secret(s.token_path()) if health.device_id else None
        if token:
            s.device.token = token
            try:
                wallet = s.device.wallet()
                check("unlocked here", True, f"counter {wallet.counter}, outbox {len(wallet.outbox)}")
                check(
                    "enrolled",
                    wallet.enrolled,
                    "with a center" if wallet.enrolled else "run `terminal_cli enroll`",
                )
            except DeviceLocked:
                check(
                    "unlocked here",
                    False,
                    "the stored token died (locked since): `terminal_cli device unlock`",
                )
        else:
            check("unlocked here", False, "no token: `terminal_cli device unlock`")
    except TerminalError as exc:
        check("device", False, str(exc))
    try:
        center = s.center
        center.health()
        known = center.well_known()
        check(
            "center",
            True,
            f"{center.base_url}, key set v{known.version}, root {known.root_fingerprint[:16]}…",
        )
        if s._health is not None and s._health.device_id:
            _pinning(s, known.root_fingerprint, check)
            has = config.read_secret(s.center_token_path(s._health.device_id)) is not None
            check("center token", has, "stored" if has else "none: `terminal_cli enroll`")
            pending = list(s.journal().pending(s._health.device_id))
            check("unfinished purchases", not pending, ", ".join(e.item_id for e in pending) or "none")
    except TerminalError as exc:
        check("center", False, str(exc))
    return View(
        checks,
        lambda: render.table(
            ["check", "status", "detail"], [(c["check"], c["status"], c["detail"]) for c in checks]
        ),
    )
