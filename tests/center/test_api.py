"""The JSON API and the storefront HTML, in process (httpx ASGI transport)."""

from __future__ import annotations

import hashlib
import re

import pytest
from cryptography.hazmat.primitives import serialization

from center.services.catalog import CatalogService
from protocol import jws
from protocol.api.catalog import ItemDetail, ItemList, WellKnownCoffer
from protocol.messages import Jwk, Keyset
from protocol.problems import PROBLEM_CONTENT_TYPE
from tests.center.conftest import AppClient, Media, add


def _problem(response: object, status: int, slug: str) -> None:
    from httpx import Response

    assert isinstance(response, Response)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    body = response.json()
    assert body["type"] == f"urn:coffer:problem:{slug}"
    assert body["status"] == status


def test_health(client: AppClient) -> None:
    r = client.get("/v1/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "database": "ok"}


def test_well_known_keyset_verifies_with_the_pinned_root(client: AppClient) -> None:
    body = WellKnownCoffer.model_validate(client.get("/.well-known/coffer").json())
    root = Jwk.model_validate(body.root_jwk.model_dump()).public_key()
    spki = root.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert hashlib.sha256(spki).hexdigest() == body.root_fingerprint
    keyset = jws.verify(body.keyset, Keyset, keys=root, now=2**31)
    assert keyset.version == body.version == 1
    assert keyset.iss == body.issuer


def test_items_list_detail_and_pages(client: AppClient, catalog: CatalogService, media: Media) -> None:
    ids = [add(catalog, media.image, title=f"Item {i}", price=100 + i) for i in range(3)]
    page = ItemList.model_validate(client.get("/v1/items", params={"limit": 2}).json())
    assert [i.item_id for i in page.items] == ids[:2]
    assert page.next_cursor
    rest = ItemList.model_validate(client.get("/v1/items", params={"cursor": page.next_cursor}).json())
    assert [i.item_id for i in rest.items] == ids[2:]
    assert rest.next_cursor is None
    item = ItemDetail.model_validate(client.get(f"/v1/items/{ids[0]}").json())
    assert item.price.amount == 100
    assert item.files[0].name == media.image.name
    assert re.fullmatch(r"itm_[a-z2-7]{16}", item.item_id)
    catalog.remove_item(ids[1])
    _problem(client.get(f"/v1/items/{ids[1]}"), 404, "not-found")
    assert [i.item_id for i in ItemList.model_validate(client.get("/v1/items").json()).items] == [
        ids[0],
        ids[2],
    ]


def test_preview_headers_ranges_and_etag(client: AppClient, catalog: CatalogService, media: Media) -> None:
    item_id = add(catalog, media.audio, title="Tune")
    url = f"/v1/items/{item_id}/previews/0"
    full = client.get(url)
    assert full.status_code == 200
    assert full.headers["content-type"] == "audio/webm"
    assert int(full.headers["content-length"]) == len(full.content)
    etag = full.headers["etag"]
    assert etag == f'"{hashlib.sha256(full.content).hexdigest()}"'
    assert "max-age" in full.headers["cache-control"]
    assert full.headers["accept-ranges"] == "bytes"

    part = client.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.content == full.content[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(full.content)}"
    assert client.get(url, headers={"Range": "bytes=-5"}).content == full.content[-5:]
    assert client.get(url, headers={"Range": "bytes=100-"}).content == full.content[100:]
    past = client.get(url, headers={"Range": f"bytes={len(full.content)}-"})
    _problem(past, 416, "range-not-satisfiable")
    assert past.headers["content-range"] == f"bytes */{len(full.content)}"
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
    assert client.get(url, headers={"If-None-Match": "*"}).status_code == 304  # RFC 9110 §13.1.2
    assert client.get(url, headers={"If-None-Match": '"*"'}).status_code == 200  # a tag, not the wildcard
    stale = client.get(url, headers={"Range": "bytes=0-1", "If-Range": '"other"'})
    assert stale.status_code == 200
    assert stale.content == full.content
    _problem(client.get(f"/v1/items/{item_id}/previews/3"), 404, "not-found")


def test_framework_errors_are_problems(client: AppClient) -> None:
    _problem(client.get("/nowhere"), 404, "not-found")
    r = client.request("DELETE", "/v1/items")
    _problem(r, 405, "method-not-allowed")
    assert r.headers["allow"] == "GET"
    r = client.get("/v1/items", params={"limit": "0"})
    _problem(r, 422, "validation-error")
    assert r.json()["errors"][0]["loc"] == ["query", "limit"]
    _problem(client.get("/v1/items", params={"cursor": "x"}), 422, "validation-error")
    _problem(client.get("/v1/items/itm_x/previews/-1"), 422, "validation-error")


def test_unhandled_error_is_internal_error_without_details(client: AppClient) -> None:
    def boom() -> None:
        raise RuntimeError("secret detail /etc/shadow")

    client.app.add_api_route("/boom", boom)
    r = client.get("/boom")
    _problem(r, 500, "internal-error")
    assert "secret" not in r.text
    assert "shadow" not in r.text


def test_security_headers(client: AppClient) -> None:
    r = client.get("/")
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "script-src" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"


def test_storefront_lists_previews_and_escapes(
    client: AppClient, catalog: CatalogService, media: Media
) -> None:
    ids = {
        "image": add(catalog, media.image, title="Pic <script>alert(1)</script>", description="<b>bold</b>"),
        "text": add(catalog, media.text, title="Story"),
        "audio": add(catalog, media.audio, title="Tune"),
        "video": add(catalog, media.video, title="Clip"),
    }
    html = client.get("/").text
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "&lt;b&gt;bold" in html
    assert f'<img src="/v1/items/{ids["image"]}/previews/0"' in html
    assert f'<audio controls preload="metadata" src="/v1/items/{ids["audio"]}/previews/0"' in html
    assert f'src="/v1/items/{ids["video"]}/previews/0"' in html
    assert "<video" in html
    assert "# A sample story" in html  # the text excerpt, inline
    assert "500 JPY" in html
    page = client.get(f"/items/{ids['text']}")
    assert page.status_code == 200
    assert "Story" in page.text
    assert page.headers["content-type"].startswith("text/html")
    _problem(client.get("/items/itm_aaaaaaaaaaaaaaaa"), 404, "not-found")
    css = client.get("/static/style.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")


@pytest.mark.parametrize(
    "path",
    [
        "/v1/items",
        "/v1/items/{item_id}",
        "/v1/items/{item_id}/previews/{n}",
        "/v1/health",
        "/.well-known/coffer",
        "/",
    ],
)
def test_openapi_documents_models_and_problems(client: AppClient, path: str) -> None:
    schema = client.get("/openapi.json").json()
    operation = schema["paths"][path]["get"]
    assert "500" in operation["responses"]
    for status, response in operation["responses"].items():
        if status.startswith(("4", "5")):
            assert list(response["content"]) == [PROBLEM_CONTENT_TYPE], (path, status)
    assert "ProblemDetails" in schema["components"]["schemas"]
    assert "HTTPValidationError" not in schema["components"]["schemas"]


def test_cached_pages_follow_the_catalog(client: AppClient, catalog: CatalogService, media: Media) -> None:
    """Pages are cached per catalog version: additions and removals by another process show at once."""
    assert client.get("/v1/items").json()["items"] == []
    first = add(catalog, media.text, title="One")
    assert [i["item_id"] for i in client.get("/v1/items").json()["items"]] == [first]
    second = add(catalog, media.text, title="Two")
    assert [i["item_id"] for i in client.get("/v1/items").json()["items"]] == [first, second]
    catalog.remove_item(first)
    assert [i["item_id"] for i in client.get("/v1/items").json()["items"]] == [second]
    assert "One" not in client.get("/").text


def test_item_pages_carry_an_etag_that_follows_the_catalog(
    client: AppClient, catalog: CatalogService, media: Media
) -> None:
    """`GET /v1/items` is rendered once per catalog version: a strong ETag over the bytes, 304 for a matching
    If-None-Match, a new ETag (and a 200) after another process adds or removes an item."""
    first = add(catalog, media.text, title="One")
    r = client.get("/v1/items")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    etag = r.headers["etag"]
    assert etag == '"' + hashlib.sha256(r.content).hexdigest() + '"'
    assert ItemList.model_validate_json(r.content).items[0].item_id == first
    again = client.get("/v1/items", headers={"If-None-Match": f'"other", {etag}'})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert client.get("/v1/items", headers={"If-None-Match": '"other"'}).status_code == 200
    assert client.get("/v1/items", params={"limit": 1}).headers["etag"] == etag  # same items, same bytes
    second = add(catalog, media.text, title="Two")
    r = client.get("/v1/items", headers={"If-None-Match": etag})
    assert r.status_code == 200
    assert r.headers["etag"] != etag
    assert [i["item_id"] for i in r.json()["items"]] == [first, second]
    catalog.remove_item(second)
    assert client.get("/v1/items", headers={"If-None-Match": etag}).status_code == 304  # the first page again
