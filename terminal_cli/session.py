"""One command's view of the world: settings → the device and center clients, the PIN, the stored tokens."""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from terminal_cli import config
from terminal_cli.center import CenterClient
from terminal_cli.device import DeviceClient, Health
from terminal_cli.discovery import find_boards
from terminal_cli.errors import DeviceLocked, NoDeviceFound, UsageError
from terminal_cli.journal import Journal

PinReader = Callable[[str], str]


def read_pin(prompt: str, *, env: str = "COFFER_PIN") -> str:
    """The PIN from `env` (scripts), else typed without echo on a terminal; refused when neither exists."""
    value = os.environ.get(env)
    if value:
        return value
    if not sys.stdin.isatty():
        raise DeviceLocked.locally("device-locked", f"no PIN: set {env} or run this on a terminal")
    return getpass.getpass(prompt)


@dataclass
class Session:
    settings: config.Settings
    pin_reader: PinReader = read_pin
    _device: DeviceClient | None = None
    _center: CenterClient | None = None
    _health: Health | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for close in self._closers:
            close()

    # -- device ----------------------------------------------------------------------------------------
    def device_url(self) -> str:
        if self.settings.device:
            return self.settings.device
        boards = find_boards()
        if not boards:
            raise NoDeviceFound("no board found on USB")
        if len(boards) > 1:
            names = ", ".join(b.device_id for b in boards)
            raise UsageError(f"several boards are plugged in ({names}): choose one with --device URL")
        if boards[0].url is None:
            raise NoDeviceFound(
                f"board {boards[0].device_id} is on {boards[0].interface} but the link has no address yet"
            )
        return boards[0].url

    @property
    def device(self) -> DeviceClient:
        if self._device is None:
            self._device = DeviceClient(self.device_url())
            self._closers.append(self._device.close)
        return self._device

    def health(self, *, fresh: bool = False) -> Health:
        if self._health is None or fresh:
            self._health = self.device.health()
        return self._health

    def device_id(self) -> str:
        device_id = self.health().device_id
        if device_id is None:
            raise UsageError("the device is not provisioned yet (it has no device_id)")
        return device_id

    def token_path(self) -> Path:
        return config.device_token_path(self.settings.paths, self.device_id())

    def unlock(self, pin: str | None = None) -> int:
        """Unlock with `pin` (or ask for it); keep the token 0600 in the runtime dir; auto-lock seconds."""
        pin = pin if pin is not None else self.pin_reader("device PIN: ")
        answer = self.device.unlock(pin)
        config.write_private(self.token_path(), answer.token)
        return answer.auto_lock_seconds

    def unlocked_device(self) -> DeviceClient:
        """The device client with a working token: the stored one, or a fresh unlock (PIN from COFFER_PIN or
        typed); DeviceLocked when neither works."""
        device = self.device
        if device.token is None:
            device.token = config.read_secret(self.token_path())
        if device.token is not None:
            try:
                device.wallet()  # the token may have died (lock, auto-lock, restart)
                return device
            except DeviceLocked:
                config.drop_secret(self.token_path())
                device.token = None
        self.unlock()
        return device

    def forget_token(self) -> None:
        config.drop_secret(self.token_path())

    # -- center ----------------------------------------------------------------------------------------
    def center_url(self) -> str:
        if not self.settings.center:
            raise UsageError(
                "no center: pass --center URL, set COFFER_CENTER, or write it in the config file"
            )
        return self.settings.center

    @property
    def center(self) -> CenterClient:
        if self._center is None:
            verify: str | bool = self.settings.center_ca or True
            self._center = CenterClient(self.center_url(), verify=verify)
            self._closers.append(self._center.close)
        return self._center

    def center_token_path(self, device_id: str) -> Path:
        return config.center_token_path(self.settings.paths, self.center.base_url, device_id)

    def enrolled_center(self) -> CenterClient:
        """The center client with this device's order token (NotEnrolled when this PC has none)."""
        center = self.center
        if center.device_token is None:
            center.device_token = config.read_secret(self.center_token_path(self.device_id()))
        center.require_token()  # before anything is recorded or asked for
        return center

    def journal(self) -> Journal:
        return Journal(self.settings.paths.state_dir)
