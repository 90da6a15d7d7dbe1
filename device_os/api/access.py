"""Every route's access policy and body limit in one table (STYLE.md 14; DESIGN.md "Device API").

`create_app` refuses to build an app with a route missing here, and `tests/device_api/test_access.py` fails
the same way. The gate (`device_os.api.gate`) enforces the table before a route runs and before its body is
read: `PUBLIC` routes need nothing, `TOKEN` routes need `Authorization: Bearer <token>` from `POST /v1/unlock`
on the device's current unlock session.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from fastapi import FastAPI

from protocol.http import access as shared
from protocol.http.asgi import route_keys as route_keys  # re-exported: app.py and the tests use it

KIB = 1024
#: The largest content stream a purchase may send (the exact bound is the order's stream length).
PURCHASE_MAX_BODY = 64 * KIB**3


class Access(Enum):
    PUBLIC = "public"  # health, identity, setup, unlock, the OpenAPI document
    TOKEN = "token"  # noqa: S105 - a bearer token of the current unlock session


@dataclass(frozen=True)
class Policy:
    access: Access
    max_body: int  # bytes; enforced while reading, not only from Content-Length
    #: The body must be sent as `Content-Type: application/json` (else 415): a public route a browser could
    #: reach cross-site with a form (text/plain, urlencoded, no type) needs no preflight; JSON does.
    json_only: bool = False


def _public(max_body: int = 0, *, json_only: bool = False) -> Policy:
    return Policy(Access.PUBLIC, max_body, json_only)


def _token(max_body: int = 0) -> Policy:
    return Policy(Access.TOKEN, max_body)


POLICIES: dict[tuple[str, str], Policy] = {
    ("GET", "/openapi.json"): _public(),
    ("GET", "/v1/health"): _public(),
    ("GET", "/v1/identity"): _public(),
    ("POST", "/v1/setup"): _public(1 * KIB, json_only=True),
    ("POST", "/v1/unlock"): _public(1 * KIB, json_only=True),
    ("POST", "/v1/lock"): _token(1 * KIB),
    ("POST", "/v1/pin"): _token(1 * KIB),
    ("POST", "/v1/activate"): _token(4 * KIB),
    ("POST", "/v1/enrollment"): _token(16 * KIB),
    ("POST", "/v1/credits"): _token(8 * KIB),
    ("GET", "/v1/wallet"): _token(),
    ("GET", "/v1/statement"): _token(),
    # purchases (issue 7): the body is the content stream, bounded per order by device_os.api.purchase_service
    ("POST", "/v1/purchases"): _token(PURCHASE_MAX_BODY),
    ("POST", "/v1/receipts"): _token(16 * KIB),
    ("GET", "/v1/outbox"): _token(),
    ("GET", "/v1/library"): _token(),
    ("GET", "/v1/library/{item}/content"): _token(),
    ("DELETE", "/v1/library/{item}"): _token(),
}
#: Limit for requests that match no route (they end in 404/405 anyway).
UNROUTED_MAX_BODY = 1 * KIB


def missing_policies(app: FastAPI) -> set[tuple[str, str]]:
    return shared.missing_policies(route_keys(app), POLICIES)


def enforce(app: FastAPI) -> None:
    """Refuse to build an app with a route missing from the table (MissingPolicyError, a RuntimeError)."""
    shared.require_policies(route_keys(app), POLICIES)
