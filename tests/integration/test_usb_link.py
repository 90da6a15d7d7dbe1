"""The simulated USB link (DESIGN.md "USB link"): the device service bound to the board's `usb0` only.

A veth pair between this namespace (the PC) and a namespace the test creates (the board); the service runs in
the board's namespace with the TPM reached over a unix socket. Checked: the PC reaches the API over the link;
the service does not answer on the board's loopback nor on another port; a Host other than the link address
is refused.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scripts.usblink import SimulatedLink

pytestmark = [pytest.mark.integration, pytest.mark.swtpm]

PORT = 8470


@pytest.fixture
def link() -> Iterator[SimulatedLink]:
    with SimulatedLink.create() as created:
        yield created


def _connect_inside(link: SimulatedLink, host: str, port: int) -> bool:
    probe = (
        "import socket,sys\n"
        "s=socket.socket(); s.settimeout(2)\n"
        f"sys.exit(0 if s.connect_ex(({host!r},{port}))==0 else 1)\n"
    )
    return link.run([sys.executable, "-c", probe]).returncode == 0


def test_device_service_is_reachable_over_usb0_only(
    link: SimulatedLink, swtpm_factory, tmp_path: Path
) -> None:
    tpm = swtpm_factory(transport="unix")
    data = tmp_path / "board"
    listen = f"{link.board_address}:{PORT}"
    service = link.start_device(data, tpm.tcti, PORT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://{listen}"
        deadline = time.monotonic() + 30
        health = None
        while time.monotonic() < deadline and service.poll() is None:
            try:
                health = httpx.get(f"{base}/v1/health", timeout=1.0)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert health is not None, "the device service never answered over the link"
        assert health.status_code == 200
        assert health.json()["phase"] == "not-set-up"

        # Bound to usb0's address only: nothing on the board's loopback, nothing on another port.
        assert _connect_inside(link, link.board_address, PORT)
        assert not _connect_inside(link, "127.0.0.1", PORT)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://{link.board_address}:{PORT + 1}/v1/health", timeout=2.0)

        foreign = httpx.get(f"{base}/v1/health", headers={"Host": f"127.0.0.1:{PORT}"}, timeout=5.0)
        assert foreign.status_code == 421
        assert foreign.headers["content-type"].startswith("application/problem+json")
    finally:
        service.terminate()
        _, stderr = service.communicate(timeout=20)
    assert service.returncode == 0, stderr.decode(errors="replace")[-2000:]
