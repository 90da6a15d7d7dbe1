"""The device service as a real child process (`device_os serve`, via bench.device_import.DeviceProcess), set
up, enrolled through the real center (tests/support/center.py) and funded with a code it issued."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from bench.device_import import PIN, DeviceProcess, provision
from protocol.keys import public_key_from_jwk
from tests.support.center import Account, RealCenter, enroll, ok

FUNDS = 1_000_000


def ready_process(
    tcti: str, tmp_path: Path, center: RealCenter, http: httpx.Client
) -> tuple[DeviceProcess, ec.EllipticCurvePublicKey, Account]:
    """Provisioned (in this process), then served: set up, unlocked, enrolled, funded."""
    data = tmp_path / "data"
    provision(data, tcti)
    device = DeviceProcess(data, tcti, tmp_path / "serve.log").start()
    with device.client(60) as client:
        assert client.post("/v1/setup", json={"pin": PIN}).status_code == 201
        device.unlock()
        account = enroll(http, client, device.token)
        device.device_id = account.device_id
        credit = account.redeem(center.issue_code(account.device_id, FUNDS))
        ok(client.post("/v1/credits", json={"credit": credit}, headers=device.auth()))
        identity = ok(client.get("/v1/identity"))
    return device, public_key_from_jwk(identity["kem_jwk"]), account


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
