"""`device_os serve` as a real process: settings from options, environment and an EnvironmentFile; sd_notify
READY=1 once serving; bound to its address only; SIGTERM stops it with an orderly TPM shutdown."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from device_os.core.device import Device
from device_os.serve import watchdog_interval
from device_os.settings import DeviceSettings
from device_os.tpm import Tpm
from tests.device_api.live import PIN, auth, free_port
from tests.support.swtpm import SwtpmInstance

ROOT = Path(__file__).resolve().parents[2]
WAIT = 60.0


def _notify_socket() -> tuple[socket.socket, str]:
    name = f"@coffer-test-{secrets.token_hex(8)}"  # abstract namespace: no path length limit, no cleanup
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name[1:])
    sock.settimeout(WAIT)
    return sock, name


def _serve(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "device_os", "serve", *args], cwd=ROOT, env=env, stdout=out, stderr=out
        )


@pytest.mark.swtpm
@pytest.mark.integration
def test_serve_process(swtpm: SwtpmInstance, tmp_path: Path) -> None:
    data = tmp_path / "data"
    device = Device.open(DeviceSettings(data_dir=data, tcti=swtpm.tcti))
    try:
        device.provision()  # first boot (its own unit on the board)
    finally:
        device.close()
    port = free_port()
    conf = tmp_path / "coffer.conf"
    conf.write_text(
        f"# boot partition\nCOFFER_DEVICE_LISTEN=127.0.0.1:{port}\nCOFFER_DEVICE_SUBNET=10.0.0.0/30\n"
    )
    notify, notify_name = _notify_socket()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("COFFER_DEVICE_") and k != "NOTIFY_SOCKET"
    } | {
        "COFFER_DEVICE_DATA_DIR": str(data),
        "NOTIFY_SOCKET": notify_name,
        "WATCHDOG_USEC": "2000000",
        "PYTHONPATH": str(ROOT),
    }
    log = tmp_path / "serve.log"
    proc = _serve(["--config", str(conf), "--tcti", swtpm.tcti], env, log)
    try:
        assert notify.recv(4096).startswith(b"READY=1"), log.read_text()
        assert notify.recv(4096) == b"WATCHDOG=1"  # pinged from the event loop
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            assert client.get("/v1/health").json()["phase"] == "not-set-up"
            assert client.get("/openapi.json").json()["info"]["title"] == "Coffer device API"
            assert client.post("/v1/setup", json={"pin": PIN}).status_code == 201
            token = client.post("/v1/unlock", json={"pin": PIN}).json()["token"]
            assert client.get("/v1/wallet", headers=auth(token)).status_code == 200
        with pytest.raises(httpx.ConnectError):  # bound to 127.0.0.1 only, not to all of 127/8
            httpx.get(f"http://127.0.0.2:{port}/v1/health", timeout=5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(WAIT) == 0, log.read_text()
        notify.settimeout(0)
        received = []
        with contextlib.suppress(BlockingIOError):
            while True:
                received.append(notify.recv(4096))
        assert b"STOPPING=1" in received
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()
    text = log.read_text()
    assert "TPM shut down in order" in text
    assert PIN not in text
    assert token not in text
    # The payment key (DA-protected) was loaded; an unorderly stop would cost one try at the next TPM start.
    swtpm.restart()
    with Tpm.open(swtpm.tcti) as tpm:
        assert tpm.da_status().failed_tries == 0
    # A restart forgets every token.
    notify, notify_name = _notify_socket()
    proc = _serve(["--config", str(conf), "--tcti", swtpm.tcti], env | {"NOTIFY_SOCKET": notify_name}, log)
    try:
        assert notify.recv(4096).startswith(b"READY=1"), log.read_text()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            assert client.get("/v1/health").json()["phase"] == "locked"
            assert client.get("/v1/wallet", headers=auth(token)).status_code == 401
            fresh = client.post("/v1/unlock", json={"pin": PIN}).json()["token"]
            assert client.get("/v1/wallet", headers=auth(fresh)).status_code == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(WAIT) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()


@pytest.mark.integration
def test_serve_refuses_bad_settings(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COFFER_DEVICE_")} | {
        "PYTHONPATH": str(ROOT)
    }
    log = tmp_path / "serve.log"
    proc = _serve(["--data", str(tmp_path), "--listen", "0.0.0.0:8470"], env, log)
    assert proc.wait(WAIT) == 2
    assert "wildcard" in log.read_text()


def test_watchdog_interval() -> None:
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None  # meant for another
