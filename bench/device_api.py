"""Device API request latency on loopback: `device_os serve` (a real process) on swtpm, a keep-alive client.

    python -m bench.device_api [--rounds N]

Prints JSON lines, each {"bench": "device_api", "case": ..., "ms": {"median", "p99", "max"}, "rounds": N}:
- `reference`: GET /v1/health (routing, Host check, JSON; no TPM command, no token), in the same run;
- `wallet`: GET /v1/wallet with a bearer token (token check, idle timer, the view; no TPM command);
- `unlock_unlocked`: POST /v1/unlock on an unlocked device (PIN checked against RAM, a new token; no TPM);
- `unlock_locked`: POST /v1/unlock on a locked device (TPM unseal of the DEK, load of the KEM and payment
  keys, state decrypt); a POST /v1/lock before each, not timed;
- `credits`: POST /v1/credits with a fresh prepaid credit (verify, one commit: fsync + TPM2_NV_Increment).
The device is enrolled through the real center (`center serve` on loopback, swtpm's EK CA), which also issues
the credits (codes redeemed before the timed loop).
Host numbers on swtpm; a board's discrete TPM and SD card are slower (FACTS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench._support import enroll_and_fund, latency_ms, real_center
from device_os.core.device import Device
from device_os.settings import DeviceSettings
from scripts.swtpm import Swtpm, copy_state, provision_template

PIN = "246810"
ROOT = Path(__file__).resolve().parents[1]


def _time(fn: Callable[[int], httpx.Response], rounds: int, expect: int = 200) -> list[float]:
    samples = []
    for i in range(rounds):
        started = time.perf_counter()
        response = fn(i)
        samples.append(time.perf_counter() - started)
        if response.status_code != expect:
            raise RuntimeError(f"unexpected {response.status_code}: {response.text}")
    return samples


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_ready(client: httpx.Client, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"device_os serve exited: {log.read_text()}")
        try:
            if client.get("/v1/health").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError("device_os serve did not start")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.device_api")
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args(argv)
    rounds = max(1, args.rounds)
    with tempfile.TemporaryDirectory(prefix="coffer-bench-api-") as tmp:
        root = Path(tmp)
        template = provision_template(root / "template")
        tpm_proc = Swtpm(copy_state(template, root / "tpm"))
        tpm_proc.start()
        proc: subprocess.Popen[bytes] | None = None
        try:
            data = root / "data"
            device = Device.open(DeviceSettings(data_dir=data, tcti=tpm_proc.tcti))
            try:
                device.provision()
                device_id = device.device_id
            finally:
                device.close()
            port = _free_port()
            log = root / "serve.log"
            env = {k: v for k, v in os.environ.items() if not k.startswith("COFFER_DEVICE_")}
            env["PYTHONPATH"] = str(ROOT)
            env["COFFER_DEVICE_TRUST_FIRST_CENTER"] = "1"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "device_os", "serve", "--data", str(data), "--tcti", tpm_proc.tcti,
                     "--listen", f"127.0.0.1:{port}"],
                    cwd=ROOT, env=env, stdout=out, stderr=out,
                )  # fmt: skip
            with (
                httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
                real_center(root, template.ca_bundle) as (center, http),
            ):
                _wait_ready(client, proc, log)
                client.post("/v1/setup", json={"pin": PIN}).raise_for_status()
                token = client.post("/v1/unlock", json={"pin": PIN}).json()["token"]
                auth = {"Authorization": f"Bearer {token}"}
                account = enroll_and_fund(center, http, client, token, 0)
                assert account.device_id == device_id
                cases: dict[str, list[float]] = {}
                cases["reference"] = _time(lambda _i: client.get("/v1/health"), rounds)
                cases["wallet"] = _time(lambda _i: client.get("/v1/wallet", headers=auth), rounds)
                cases["unlock_unlocked"] = _time(
                    lambda _i: client.post("/v1/unlock", json={"pin": PIN}), rounds
                )
                token = client.post("/v1/unlock", json={"pin": PIN}).json()[
                    "token"
                ]  # the newest 8 stay valid
                auth = {"Authorization": f"Bearer {token}"}
                credits = [account.prepaid(center, 1) for _ in range(rounds)]
                cases["credits"] = _time(
                    lambda i: client.post("/v1/credits", json={"credit": credits[i]}, headers=auth), rounds
                )
                locked_rounds = max(1, rounds // 4)
                samples = []
                for _ in range(locked_rounds):
                    client.post("/v1/lock", headers=auth).raise_for_status()
                    started = time.perf_counter()
                    r = client.post("/v1/unlock", json={"pin": PIN})
                    samples.append(time.perf_counter() - started)
                    r.raise_for_status()
                    auth = {"Authorization": f"Bearer {r.json()['token']}"}
                cases["unlock_locked"] = samples
                for case, values in cases.items():
                    print(
                        json.dumps(
                            {
                                "bench": "device_api",
                                "case": case,
                                "ms": latency_ms(values),
                                "rounds": len(values),
                            }
                        )
                    )
                    sys.stdout.flush()
        finally:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            tpm_proc.stop(orderly=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
