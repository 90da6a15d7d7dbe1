"""A lean path for `GET /v1/items`, the center's hot read-only route (docs/center.md "Lean catalog path").

FastAPI's middleware stack, routing, dependency injection and parameter validation cost several times what a
bare ASGI app spends on a request; for a page already rendered once per catalog version that overhead was
most of the route's cost. `LeanItems` sits outside the whole FastAPI stack and answers the requests it can
read with certainty: `GET /v1/items` with no query string or only `limit` (1–100, no leading zero) and
`cursor` (1–18 digits), each at most once, and at most one `If-None-Match` of at most 200 characters. It
calls the route's own `current_listing` and `listing_response` (the same catalog service, version check and
ETag rule) and adds `security_headers` (as `SecurityHeaders` does), so the answer is byte for byte the
route's. Everything else (other paths and methods, unknown or repeated or invalid parameters, an error from
the catalog) goes to the FastAPI app unchanged, which validates and renders problem+json in its one place.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

from center.api.routes.items import current_listing, listing_response
from center.services.catalog import CatalogService, Listing

PATH = "/v1/items"
DEFAULT_LIMIT = 50  # the route's default
LIMIT = re.compile(rb"\A(?:[1-9][0-9]?|100)\Z")  # a canonical integer within the route's 1..100
CURSOR = re.compile(rb"\A[0-9]{1,18}\Z")  # the route's cursor pattern and max_length
MAX_IF_NONE_MATCH = 200  # the route's max_length for If-None-Match

Arguments = tuple[int, str | None, str | None]  # limit, cursor, If-None-Match


def arguments(scope: Scope) -> Arguments | None:
    """The route's arguments when the request is one the lean path answers with certainty, else None."""
    if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] != PATH or scope.get("root_path"):
        return None
    limit, cursor = DEFAULT_LIMIT, None
    query: bytes = scope.get("query_string", b"")
    if query:
        seen: set[bytes] = set()
        for part in query.split(b"&"):
            name, equals, value = part.partition(b"=")
            if not equals or name in seen:
                return None
            seen.add(name)
            if name == b"limit" and LIMIT.match(value):
                limit = int(value)
            elif name == b"cursor" and CURSOR.match(value):
                cursor = value.decode("ascii")
            else:
                return None
    if_none_match = None
    for name, value in scope["headers"]:
        if name == b"if-none-match":
            if if_none_match is not None or len(value) > MAX_IF_NONE_MATCH:
                return None
            if_none_match = value.decode("latin-1")
    return limit, cursor, if_none_match


class LeanItems:
    """Pure ASGI, outermost: answers `GET /v1/items` (see the module docstring) or hands the request on."""

    def __init__(self, app: ASGIApp, catalog: CatalogService, headers: list[tuple[bytes, bytes]]) -> None:
        self.app = app
        self.catalog = catalog
        self.headers = headers  # center.api.security.security_headers: what every response carries

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        args = arguments(scope)
        if args is None:
            await self.app(scope, receive, send)
            return
        limit, cursor, if_none_match = args
        listing: Listing | None
        try:
            listing = await current_listing(self.catalog, limit, cursor)
        except Exception:  # any failure is the route's to answer, through the one error handler
            listing = None
        if listing is None:
            await self.app(scope, receive, send)
            return
        response = listing_response(listing, if_none_match)
        headers = [*response.raw_headers, *self.headers]
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})
