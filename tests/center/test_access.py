"""Every route has an access policy (STYLE.md item 14); a new route without one stops the app."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fastapi import APIRouter, FastAPI

from center.api import access
from center.api.app import create_app
from center.errors import ConfigError
from center.settings import CenterSettings
from tests.center.conftest import AppClient


def test_every_route_has_a_policy(settings: CenterSettings) -> None:
    app = create_app(settings)
    assert access.missing_policies(app) == set()
    assert {key for key in access.POLICIES} == access.route_keys(app)


def test_catalog_is_public_and_there_are_no_admin_routes(settings: CenterSettings) -> None:
    app = create_app(settings)
    keys = access.route_keys(app)
    public = {k for k in keys if access.POLICIES[k] is access.Access.PUBLIC}
    assert all(method == "GET" for method, path in public if not path.startswith("/v1/devices"))
    assert {path for _, path in keys} & {"/v1/credits", "/v1/ledger", "/v1/admin"} == set()


def test_device_token_routes_refuse_requests_without_a_token(
    settings: CenterSettings, catalog: object
) -> None:
    client = AppClient(create_app(settings))
    guarded = [k for k, policy in access.POLICIES.items() if policy is access.Access.DEVICE_TOKEN]
    assert len(guarded) == 6
    for method, path in guarded:
        url = path.replace("{order_id}", "ord_x")
        for headers in ({}, {"Authorization": "Bearer " + "x" * 43}, {"Authorization": "Basic eHg6eXk="}):
            r = client.request(method, url, headers=headers, json={})
            assert r.status_code == 401, (method, path, r.text)
            assert r.headers["www-authenticate"] == "Bearer"


def test_a_route_without_a_policy_is_refused() -> None:
    app = FastAPI()
    router = APIRouter()

    @router.post("/v1/items")
    def sneaky() -> None:
        """An admin action must not appear as a route."""

    app.include_router(router)
    assert ("POST", "/v1/items") in access.missing_policies(app)
    with pytest.raises(ConfigError, match="without an access policy"):
        access.enforce(app)


def test_large_bodies_are_refused(settings: CenterSettings, catalog: object) -> None:
    client = AppClient(create_app(settings))
    big = b'{"code": "' + b"x" * 70_000 + b'"}'
    for path in ("/v1/devices", "/v1/credits/redeem", "/v1/orders", "/v1/statements"):
        r = client.request("POST", path, content=big, headers={"Content-Type": "application/json"})
        assert r.status_code == 413, r.text
        assert r.json()["type"] == "urn:coffer:problem:payload-too-large"

    async def chunked() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 10_000

    r = client.request("POST", "/v1/devices", content=chunked(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    r = client.request("POST", "/v1/devices", content=b"{}", headers={"Content-Type": "application/json"})
    assert r.status_code == 422  # small bodies still reach the route
