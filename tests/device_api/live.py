"""A device service on a real swtpm behind real uvicorn on a free 127.0.0.1 port, in this process.

In-process (a server thread) so the tests can snapshot the TPM counter through the same adapter: a second
process opening the TPM would flush the service's loaded keys. `tests/device_api/test_serve.py` runs the real
`device_os serve` process.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from device_os.api.settings import ServiceSettings
from device_os.core.device import Device
from device_os.serve import NotifyingServer, build_server
from device_os.tpm import Tpm

PIN = "135792"
STARTUP_SECONDS = 20.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class FakeClock:
    """The core's idle clock, moved by the test (no sleeping, no timing assertions)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class Snapshot:
    """DESIGN.md "no state change": TPM counter, the `state` bytes, the content directory listing."""

    counter: int
    state: bytes | None
    content: tuple[str, ...]


class LiveDevice:
    def __init__(self, settings: ServiceSettings, clock: FakeClock) -> None:
        self.settings = settings
        self.clock = clock
        tpm = Tpm.open(settings.tcti)
        try:
            self.device = Device(settings, tpm, clock=clock)
            self.device.provision()
        except BaseException:
            tpm.close()
            raise
        host, port = settings.address()
        self.url = f"http://{host}:{port}"
        self.server: NotifyingServer = build_server(settings, self.device, environ={})  # no sd_notify
        self._thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self.client = httpx.Client(base_url=self.url, timeout=30.0)

    def start(self) -> LiveDevice:
        self._thread.start()
        deadline = time.monotonic() + STARTUP_SECONDS
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the device service did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self._thread.join(STARTUP_SECONDS)
        self.device.close()

    # -- helpers ------------------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        path = self.device.store.state_path
        return Snapshot(
            counter=self.device.tpm.counter_read(),
            state=path.read_bytes() if path.exists() else None,
            content=tuple(self.device.content.listing()),
        )

    def failed_tries(self) -> int:
        return self.device.tpm.da_status().failed_tries

    def setup(self, pin: str = PIN) -> None:
        r = self.client.post("/v1/setup", json={"pin": pin})
        assert r.status_code == 201, r.text

    def unlock(self, pin: str = PIN) -> str:
        r = self.client.post("/v1/unlock", json={"pin": pin})
        assert r.status_code == 200, r.text
        token: str = r.json()["token"]
        return token

    def identity(self) -> dict[str, Any]:
        r = self.client.get("/v1/identity")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_settings(data_dir: Path, tcti: str, **extra: Any) -> ServiceSettings:
    extra.setdefault("trust_first_center", True)  # the tests' centers are trusted on first use
    return ServiceSettings(data_dir=data_dir, tcti=tcti, listen=f"127.0.0.1:{free_port()}", **extra)


@contextlib.contextmanager
def set_up_device(data_dir: Path, tcti: str) -> Iterator[LiveDevice]:
    """A device service on `tcti`, started and set up with the test PIN; stopped on leaving."""
    live = LiveDevice(make_settings(data_dir, tcti), FakeClock()).start()
    try:
        live.setup()
        yield live
    finally:
        live.stop()
