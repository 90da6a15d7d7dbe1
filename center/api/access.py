"""Every endpoint's access policy in one table (STYLE.md item 14).

`create_app` refuses to start if a route is missing here, and `tests/center/test_access.py` fails the same
way.
The catalog is public; admin actions (`center item add|remove`, …) are CLI commands on the server host, never
routes. `DEVICE_TOKEN` routes take the device's bearer token (center.api.deps.get_device).
"""

from __future__ import annotations

from enum import Enum

from fastapi import FastAPI

from center.errors import ConfigError
from protocol.http import access as shared
from protocol.http.asgi import route_keys as route_keys  # re-exported: the tests use it


class Access(Enum):
    PUBLIC = "public"  # anyone: the storefront, the catalog, the key set, health, enrollment (attested)
    DEVICE_TOKEN = "device-token"  # noqa: S105 - a policy name. Authorization: Bearer <the device token from the enrollment answer>


POLICIES: dict[tuple[str, str], Access] = {
    ("GET", "/"): Access.PUBLIC,
    ("GET", "/items/{item_id}"): Access.PUBLIC,
    ("GET", "/static/style.css"): Access.PUBLIC,
    ("GET", "/v1/health"): Access.PUBLIC,
    ("GET", "/.well-known/coffer"): Access.PUBLIC,
    ("GET", "/v1/items"): Access.PUBLIC,
    ("GET", "/v1/items/{item_id}"): Access.PUBLIC,
    ("GET", "/v1/items/{item_id}/previews/{n}"): Access.PUBLIC,
    ("GET", "/openapi.json"): Access.PUBLIC,
    ("POST", "/v1/devices"): Access.PUBLIC,
    ("POST", "/v1/devices/{device_id}/activate"): Access.PUBLIC,
    ("POST", "/v1/credits/redeem"): Access.DEVICE_TOKEN,
    ("POST", "/v1/orders"): Access.DEVICE_TOKEN,
    ("GET", "/v1/orders/{order_id}"): Access.DEVICE_TOKEN,
    ("GET", "/v1/orders/{order_id}/content"): Access.DEVICE_TOKEN,
    ("POST", "/v1/orders/{order_id}/payment"): Access.DEVICE_TOKEN,
    ("POST", "/v1/statements"): Access.DEVICE_TOKEN,
}


def missing_policies(app: FastAPI) -> set[tuple[str, str]]:
    return shared.missing_policies(route_keys(app), POLICIES)


def enforce(app: FastAPI) -> None:
    try:
        shared.require_policies(route_keys(app), POLICIES)
    except shared.MissingPolicyError as exc:
        raise ConfigError(str(exc)) from exc
