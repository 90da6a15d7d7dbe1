"""`device_os serve`: the device API under uvicorn (DESIGN.md "Device API", "TPM discipline").

    device_os serve [--config FILE] [--data DIR] [--tcti TCTI] [--listen HOST:PORT]

The command line and the settings are `device_os/__main__.py`'s, shared by every command: options >
`COFFER_DEVICE_*` environment > the config file (`--config` or `COFFER_DEVICE_CONFIG`, systemd EnvironmentFile
syntax) > defaults (device_os.api.settings); `run(settings)` is the service. It binds only its configured
address. Once it accepts connections it tells systemd `READY=1` (sd_notify, when `NOTIFY_SOCKET` is set). On
SIGTERM/SIGINT it stops accepting, lets running requests finish (bounded), sends `STOPPING=1`, locks the
device and closes the TPM with an orderly TPM2_Shutdown(STATE) (the next start costs no DA try).
Exit codes: 0 stopped cleanly, 2 bad settings, 1 the device or TPM could not be opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator, Mapping

import uvicorn

from device_os.api.app import create_app
from device_os.api.bounded_http import BoundedHttpToolsProtocol
from device_os.api.settings import ServiceSettings
from device_os.core.device import Device
from device_os.errors import DeviceError
from device_os.tpm import TpmError

log = logging.getLogger("device_os.serve")
GRACEFUL_SECONDS = 10
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def sd_notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send `state` to systemd's notification socket (sd_notify(3)); False when there is none."""
    path = (environ if environ is not None else os.environ).get("NOTIFY_SOCKET")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
    except OSError as exc:
        log.warning("sd_notify failed: %s", exc)
        return False
    return True


def watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Seconds between `WATCHDOG=1` pings (half of systemd's WatchdogSec), None when no watchdog is asked for
    this process (sd_watchdog_enabled(3): WATCHDOG_USEC set, WATCHDOG_PID absent or ours)."""
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2 / 1_000_000


class NotifyingServer(uvicorn.Server):
    """uvicorn's server that tells systemd READY=1 once its socket listens, pings the watchdog from the event
    loop (a stuck loop stops the pings: systemd restarts the service), says STOPPING=1 on the way out."""

    def __init__(self, config: uvicorn.Config, environ: Mapping[str, str] | None = None) -> None:
        super().__init__(config)
        self.environ: Mapping[str, str] = dict(os.environ if environ is None else environ)
        self._watchdog: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            sd_notify(f"READY=1\nSTATUS=serving on {self.config.host}:{self.config.port}", self.environ)
            interval = watchdog_interval(self.environ)
            if interval is not None:
                self._watchdog = asyncio.create_task(self._ping(interval))

    async def _ping(self, interval: float) -> None:
        while True:
            sd_notify("WATCHDOG=1", self.environ)
            await asyncio.sleep(interval)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        sd_notify("STOPPING=1", self.environ)
        await super().shutdown(sockets)


def build_server(
    settings: ServiceSettings, device: Device, *, environ: Mapping[str, str] | None = None
) -> NotifyingServer:
    """The uvicorn server for `device`; `environ` (default: the process's) holds NOTIFY_SOCKET, WATCHDOG_*."""
    host, port = settings.address()
    config = uvicorn.Config(
        create_app(settings, device),
        host=host,
        port=port,
        lifespan="on",
        loop="uvloop",  # C receive path: the loop holds the GIL less while the import worker runs
        http=BoundedHttpToolsProtocol,  # httptools with bounds on the request line and headers (414, 431)
        log_config=None,  # our logging; uvicorn's loggers propagate to it
        server_header=False,
        proxy_headers=False,  # nothing sits in front of the device
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
    )
    return NotifyingServer(config, environ)


def run(settings: ServiceSettings) -> int:
    """Open the device, serve until SIGTERM/SIGINT, then lock and shut the TPM down in order."""
    try:
        device = Device.open(settings)
    except (DeviceError, TpmError) as exc:
        log.error("cannot open the device: %s: %s", type(exc).__name__, exc)
        return 1
    try:
        status = device.status()
        log.info("device %s: %s", status.device_id or "(not provisioned)", status.phase.value)
        server = build_server(settings, device)
        with _signals_after_uvicorn():
            server.run()
        return 0 if server.started else 1
    finally:
        try:
            device.close()  # lock (DEK and hot keys dropped), then TPM2_Shutdown(STATE)
        except (DeviceError, TpmError) as exc:  # e.g. the TPM went away: nothing more to do in order
            log.error("stopped; the TPM shutdown failed: %s", type(exc).__name__)
        else:
            log.info("stopped; TPM shut down in order")


@contextlib.contextmanager
def _signals_after_uvicorn() -> Iterator[None]:
    """uvicorn re-raises the SIGTERM/SIGINT that stopped it once it is done, to the handler that was in place
    before it ran. With Python's defaults that would kill the process before the orderly TPM shutdown, so a
    recorder stands there instead; the process then leaves through `run()`'s `finally`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda s, _f: received.append(s)) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            log.info("stopping on %s", signal.Signals(received[0]).name)
