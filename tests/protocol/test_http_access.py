"""protocol.http.access and `asgi.route_keys`: every route needs a policy, and the check fails closed for a
route without one, in a bare table and in both programs' tables."""

from __future__ import annotations

import pytest
from fastapi import APIRouter, FastAPI
from starlette.routing import Mount

from center.api import access as center_access
from center.errors import ConfigError
from device_os.api import access as device_access
from protocol.http.access import MissingPolicyError, PolicyTable, missing_policies, require_policies
from protocol.http.asgi import route_keys

TABLE: PolicyTable[str] = {("GET", "/v1/health"): "public", ("POST", "/v1/things/{id}"): "token"}


def _app() -> FastAPI:
    app = FastAPI(openapi_url=None)
    router = APIRouter(prefix="/v1")

    @router.get("/health")
    def health() -> None: ...

    @router.post("/things/{id}")
    def things(id: str) -> None: ...

    app.include_router(router)
    return app


def test_route_keys_flatten_routers_and_imply_head() -> None:
    app = _app()
    assert route_keys(app) == {("GET", "/v1/health"), ("POST", "/v1/things/{id}")}
    require_policies(route_keys(app), TABLE)  # complete: no error
    assert missing_policies(route_keys(app), TABLE) == set()


def test_a_route_without_a_policy_fails() -> None:
    app = _app()

    @app.delete("/v1/things/{id}")
    def forgotten(id: str) -> None: ...

    assert missing_policies(route_keys(app), TABLE) == {("DELETE", "/v1/things/{id}")}
    with pytest.raises(MissingPolicyError, match="without an access policy") as info:
        require_policies(route_keys(app), TABLE)
    assert info.value.missing == {("DELETE", "/v1/things/{id}")}
    assert isinstance(info.value, RuntimeError)


def test_same_path_other_method_is_not_covered() -> None:
    assert missing_policies([("PUT", "/v1/health")], TABLE) == {("PUT", "/v1/health")}


def test_a_mount_needs_a_policy_too() -> None:
    app = _app()
    app.router.routes.append(Mount("/files", app=FastAPI()))
    missing = missing_policies(route_keys(app), TABLE)
    assert [method for method, _ in missing] == ["*"]
    with pytest.raises(MissingPolicyError):
        require_policies(route_keys(app), TABLE)


def test_an_empty_table_refuses_everything() -> None:
    with pytest.raises(MissingPolicyError):
        require_policies(route_keys(_app()), {})


def test_both_programs_enforce_with_the_shared_check() -> None:
    """The programs keep their own tables and error types; the mechanism is this one."""
    app = _app()
    with pytest.raises(ConfigError, match="without an access policy") as center_error:
        center_access.enforce(app)
    assert isinstance(center_error.value.__cause__, MissingPolicyError)
    with pytest.raises(MissingPolicyError, match="without an access policy"):
        device_access.enforce(app)
    assert center_access.route_keys is device_access.route_keys is route_keys
    assert center_access.missing_policies(app) == route_keys(app) - set(center_access.POLICIES)
    assert device_access.missing_policies(app) == route_keys(app) - set(device_access.POLICIES)
