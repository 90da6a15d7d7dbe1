"""Every endpoint's access policy in one table (STYLE.md item 14).

`create_app` refuses to start if a route is missing here, and `tests/center/test_access.py` fails the same
way.
The catalog is public; admin actions (`center item add|remove`, …) are CLI commands on the server host, never
routes. `DEVICE_TOKEN` routes take the device's bearer token (center.api.deps.get_device).
"""

from __future__ import annotations

from enum import Enum

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from center.errors import ConfigError


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


def route_keys(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves (HEAD is implied by GET)."""
    keys: set[tuple[str, str]] = set()
    for route in iter_route_contexts(app.routes):  # flattens included routers
        methods = route.methods or {"*"}  # a mount or websocket has no methods: it needs an entry too
        for method in methods:
            if method != "HEAD":
                keys.add((method, route.path or repr(route)))
    return keys


def missing_policies(app: FastAPI) -> set[tuple[str, str]]:
    return route_keys(app) - set(POLICIES)


def enforce(app: FastAPI) -> None:
    missing = missing_policies(app)
    if missing:
        raise ConfigError(f"routes without an access policy: {sorted(missing)}")
