"""The lean `GET /v1/items` path (center.api.lean) against the FastAPI route it stands in front of.

Every answer is compared byte for byte (status, the raw header list in order, body) with the same app built
with `lean_items=False`; a recorder under the lean layer shows which requests it answered itself and which it
handed on, so a comparison cannot pass merely because everything fell through.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import text
from starlette.types import ASGIApp, Receive, Scope, Send

from center.api.app import create_app
from center.api.lean import LeanItems
from center.api.security import security_headers
from center.services.catalog import CatalogService
from center.settings import CenterSettings
from tests.center.conftest import _ENGINES, AppClient, Media, add


class Recorder:
    """Passes every request to `app` and remembers its method, path and query string."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.seen: list[tuple[str, str, bytes]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.seen.append((scope["method"], scope["path"], scope.get("query_string", b"")))
        await self.app(scope, receive, send)


class Pair:
    """The FastAPI app alone (`plain`) and the lean layer over it (`lean`, with `recorder` in between)."""

    def __init__(self, settings: CenterSettings) -> None:
        app = create_app(settings, lean_items=False)
        _ENGINES.append(app.state.center.engine)
        self.recorder = Recorder(app)
        self.plain = AppClient(app)
        self.lean = AppClient(
            LeanItems(self.recorder, app.state.center.catalog, security_headers(hsts=False))
        )

    def same(self, method: str, url: str, **kwargs: Any) -> tuple[httpx.Response, bool]:
        """Both answers, asserted identical; returns the lean one and whether the lean layer answered it."""
        before = len(self.recorder.seen)
        lean = self.lean.request(method, url, **kwargs)
        answered = len(self.recorder.seen) == before
        plain = self.plain.request(method, url, **kwargs)
        assert (lean.status_code, lean.headers.raw, lean.content) == (
            plain.status_code,
            plain.headers.raw,
            plain.content,
        ), url
        return lean, answered


@pytest.fixture
def pair(settings: CenterSettings, catalog: CatalogService) -> Pair:
    return Pair(settings)


def test_the_lean_path_answers_the_listing_exactly_as_the_route(
    pair: Pair, catalog: CatalogService, media: Media
) -> None:
    first = add(catalog, media.text, title="One")
    add(catalog, media.image, title="Two", description="café")
    add(catalog, media.text, title="Three")
    page, answered = pair.same("GET", "/v1/items")
    assert (answered, page.status_code) == (True, 200)
    assert [name for name, _ in page.headers.raw][:4] == [
        b"etag",
        b"cache-control",
        b"content-length",
        b"content-type",
    ]
    assert (b"content-security-policy", page.headers["content-security-policy"].encode()) in page.headers.raw
    cursor = pair.same("GET", "/v1/items?limit=1")[0].json()["next_cursor"]
    for query in (
        "limit=1",
        "limit=2",
        "limit=100",
        "limit=99",
        f"cursor={cursor}",
        f"limit=1&cursor={cursor}",
        f"cursor={cursor}&limit=1",
        "cursor=0",
        "cursor=999999999999999999",
    ):
        response, answered = pair.same("GET", "/v1/items?" + query)
        assert (answered, response.status_code) == (True, 200), query
    etag = page.headers["etag"]
    for if_none_match, status in (
        (etag, 304),
        (f'"old", {etag}', 304),
        ('"old"', 200),
        ("*", 304),  # RFC 9110 §13.1.2: a current representation exists
        ("", 200),
        (f"W/{etag}", 304),  # If-None-Match compares weakly
        ("x" * 200, 200),
    ):
        response, answered = pair.same("GET", "/v1/items", headers={"If-None-Match": if_none_match})
        assert (answered, response.status_code) == (True, status), if_none_match
    # a catalog change is seen at once: the old ETag no longer matches, the new page lists the new item
    new = add(catalog, media.text, title="Four")
    changed, answered = pair.same("GET", "/v1/items", headers={"If-None-Match": etag})
    assert (answered, changed.status_code) == (True, 200)
    assert changed.headers["etag"] != etag
    assert changed.json()["items"][-1]["item_id"] == new
    catalog.remove_item(first)
    after, answered = pair.same("GET", "/v1/items", headers={"If-None-Match": changed.headers["etag"]})
    assert (answered, after.status_code) == (True, 200)
    assert first not in [i["item_id"] for i in after.json()["items"]]


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("limit=0", 422),
        ("limit=101", 422),
        ("limit=abc", 422),
        ("limit=", 422),
        ("cursor=x", 422),
        ("cursor=1234567890123456789", 422),
        ("cursor=", 422),
        ("limit=007", 200),  # FastAPI's reading of a non-canonical number stays FastAPI's
        ("limit=%31", 200),
        ("limit=1&limit=2", 200),
        ("q=search", 200),  # unknown parameters: the route ignores them, the lean path does not guess
        ("limit", 422),  # a blank value
        ("limit=1&", 200),
    ],
)
def test_anything_unusual_is_left_to_fastapi(
    pair: Pair, catalog: CatalogService, media: Media, query: str, status: int
) -> None:
    add(catalog, media.text)
    response, answered = pair.same("GET", "/v1/items?" + query)
    assert not answered
    assert response.status_code == status, response.text


def test_other_methods_headers_and_routes_are_untouched(
    pair: Pair, catalog: CatalogService, media: Media
) -> None:
    item = add(catalog, media.image)
    for method, url, headers in [
        ("HEAD", "/v1/items", {}),
        ("POST", "/v1/items", {}),
        ("DELETE", "/v1/items", {}),
        ("GET", "/v1/items/", {}),
        ("GET", "/v1/items", {"If-None-Match": "x" * 201}),
        ("GET", f"/v1/items/{item}", {}),
        ("GET", f"/v1/items/{item}/previews/0", {}),
        ("GET", "/v1/health", {}),
        ("GET", "/", {}),
        ("GET", "/openapi.json", {}),
    ]:
        _, answered = pair.same(method, url, headers=headers)
        assert not answered, (method, url)
    twice = [(b"if-none-match", b'"a"'), (b"if-none-match", b'"b"')]
    _, answered = pair.same("GET", "/v1/items", headers=twice)
    assert not answered


def test_a_catalog_error_is_the_routes_problem(pair: Pair, catalog: CatalogService, media: Media) -> None:
    """The database loses the items table: the lean path hands the request on and FastAPI's one error
    handler answers 503 problem+json, the same with or without the lean layer."""
    add(catalog, media.text)
    assert pair.same("GET", "/v1/items")[1]
    with catalog_engine(pair).begin() as conn:
        conn.execute(text("ALTER TABLE items RENAME TO items_gone"))
    response, answered = pair.same("GET", "/v1/items")
    assert not answered
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"


def catalog_engine(pair: Pair) -> Any:
    return pair.plain.app.state.center.engine


def test_create_app_puts_the_lean_path_in_front(
    settings: CenterSettings, catalog: CatalogService, media: Media
) -> None:
    add(catalog, media.text)
    app = create_app(settings)
    _ENGINES.append(app.state.center.engine)
    plain = create_app(settings, lean_items=False)
    _ENGINES.append(plain.state.center.engine)
    assert isinstance(app.build_middleware_stack(), LeanItems)
    assert not isinstance(plain.build_middleware_stack(), LeanItems)
    for url in ("/v1/items", "/v1/items?limit=1", "/v1/items?limit=0", "/v1/health"):
        a, b = AppClient(app).get(url), AppClient(plain).get(url)
        assert (a.status_code, a.headers.raw, a.content) == (b.status_code, b.headers.raw, b.content), url
