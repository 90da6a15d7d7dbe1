"""The device service as a real child process (`device_os serve`, via bench.device_import.DeviceProcess), set
up, enrolled and funded by `tests.device.center.TestCenter` over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from bench.device_import import PIN, DeviceProcess, provision
from protocol.keys import public_key_from_jwk
from tests.device.center import TestCenter

FUNDS = 1_000_000


def ready_process(
    tcti: str, tmp_path: Path, center: TestCenter
) -> tuple[DeviceProcess, ec.EllipticCurvePublicKey]:
    """Provisioned (in this process), then served: set up, unlocked, enrolled, funded."""
    data = tmp_path / "data"
    provision(data, tcti)
    device = DeviceProcess(data, tcti, tmp_path / "serve.log").start()
    with device.client(60) as client:
        assert client.post("/v1/setup", json={"pin": PIN}).status_code == 201
        device.unlock()
        identity = client.get("/v1/identity").json()
        device.device_id = identity["device_id"]
        r = client.post(
            "/v1/enrollment",
            json={"enrollment": center.enrollment(device.device_id), "root_jwk": center.root_jwk},
            headers=device.auth(),
        )
        assert r.status_code == 200, r.text
        r = client.post(
            "/v1/credits",
            json={"credit": center.credit(device.device_id, amount=FUNDS)},
            headers=device.auth(),
        )
        assert r.status_code == 200, r.text
    return device, public_key_from_jwk(identity["kem_jwk"])


def post_purchase(client: httpx.Client, device: DeviceProcess, order: str, body: Any) -> httpx.Response:
    return client.post(
        "/v1/purchases",
        content=body,
        headers={**device.auth(), "Coffer-Order": order, "Content-Type": "application/octet-stream"},
    )


def wallet(client: httpx.Client, device: DeviceProcess) -> dict[str, Any]:
    r = client.get("/v1/wallet", headers=device.auth())
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body
