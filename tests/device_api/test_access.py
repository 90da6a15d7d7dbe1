"""The access table (STYLE.md 14): every route has a policy, the table names only real routes, and the gate
enforces it on the live service."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest

from device_os.api.access import POLICIES, Access, enforce, missing_policies, route_keys
from device_os.api.app import create_app
from device_os.api.settings import ServiceSettings
from device_os.core.device import Device
from tests.device_api.live import LiveDevice, auth

PUBLIC_ROUTES = {
    ("GET", "/openapi.json"),
    ("GET", "/v1/health"),
    ("GET", "/v1/identity"),
    ("POST", "/v1/setup"),
    ("POST", "/v1/unlock"),
}


def _app(tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = ServiceSettings(data_dir=tmp_path, tcti="swtpm:port=1", listen="127.0.0.1:8470")
    # The app only stores the device until a request or the lifespan runs: none does here.
    return create_app(settings, cast(Device, object()))


def test_every_route_has_a_policy(tmp_path: Path) -> None:
    app = _app(tmp_path)
    assert missing_policies(app) == set()
    assert route_keys(app) == set(POLICIES), "the table names a route the app does not serve"


def test_a_route_without_a_policy_is_caught(tmp_path: Path) -> None:
    app = _app(tmp_path)

    @app.get("/v1/forgotten")
    def forgotten() -> dict[str, str]:
        return {}

    assert missing_policies(app) == {("GET", "/v1/forgotten")}
    with pytest.raises(RuntimeError, match="without an access policy"):
        enforce(app)


def test_only_health_identity_setup_unlock_are_public() -> None:
    public = {key for key, policy in POLICIES.items() if policy.access is Access.PUBLIC}
    assert public == PUBLIC_ROUTES


def test_openapi_marks_token_routes(tmp_path: Path) -> None:
    schema = _app(tmp_path).openapi()
    for (method, path), policy in POLICIES.items():
        if path == "/openapi.json":
            continue
        operation = schema["paths"][path][method.lower()]
        assert ("security" in operation) == (policy.access is Access.TOKEN), (method, path)
        assert "application/problem+json" in operation["responses"]["default"]["content"]


@pytest.mark.swtpm
@pytest.mark.integration
def test_token_routes_refuse_without_a_live_token(unlocked: tuple[LiveDevice, str]) -> None:
    live, token = unlocked
    token_routes = [key for key, policy in POLICIES.items() if policy.access is Access.TOKEN]
    assert token_routes
    before = live.snapshot()
    for method, path in token_routes:
        wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
        for headers in ({}, auth("x" * 43), {"Authorization": "Basic Zm9vOmJhcg=="}, auth(wrong)):
            r = live.client.request(method, path, headers=headers, json={})
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["type"] == "urn:coffer:problem:unauthorized"
            assert r.headers["www-authenticate"].startswith("Bearer")
    assert live.snapshot() == before
    assert live.client.get("/v1/wallet", headers=auth(token)).status_code == 200  # the real one still works


@pytest.mark.swtpm
@pytest.mark.integration
def test_public_routes_need_no_token(live: LiveDevice) -> None:
    assert live.client.get("/v1/health").status_code == 200
    assert live.client.get("/openapi.json").status_code == 200
    assert live.client.get("/v1/identity").status_code == 409  # not set up: a state answer, not 401
