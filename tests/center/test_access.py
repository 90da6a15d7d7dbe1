"""Every route has an access policy (STYLE.md item 14); a new route without one stops the app."""

from __future__ import annotations

import pytest
from fastapi import APIRouter, FastAPI

from center.api import access
from center.api.app import create_app
from center.errors import ConfigError
from center.settings import CenterSettings


def test_every_route_has_a_policy(settings: CenterSettings) -> None:
    app = create_app(settings)
    assert access.missing_policies(app) == set()
    assert {key for key in access.POLICIES} == access.route_keys(app)


def test_catalog_is_public_and_there_are_no_admin_routes(settings: CenterSettings) -> None:
    app = create_app(settings)
    keys = access.route_keys(app)
    assert all(access.POLICIES[k] is access.Access.PUBLIC for k in keys)
    assert {method for method, _ in keys} == {"GET"}


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
