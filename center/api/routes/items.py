"""The catalog API: `GET /v1/items`, `/v1/items/{item_id}`, `/v1/items/{item_id}/previews/{n}` (Range)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from center.api.deps import CatalogDep
from center.api.openapi import problem_responses
from center.services.catalog import CatalogService, Listing
from protocol.api.catalog import ItemDetail, ItemList
from protocol.http.conditional import none_match
from protocol.http.ranges import content_range, parse_range

router = APIRouter(tags=["catalog"])

ItemIdPath = Annotated[str, Path(min_length=1, max_length=64, description="An item id such as itm_…")]
PREVIEW_MEDIA_TYPES = ["image/webp", "text/plain", "audio/webm", "video/webm", "application/octet-stream"]


@router.get(
    "/v1/items",
    response_model=ItemList,
    responses={
        304: {"description": "Not modified (If-None-Match matched the page's ETag)"},
        **problem_responses("bad-request", "service-unavailable"),
    },
)
async def list_items(
    catalog: CatalogDep,
    limit: Annotated[int, Query(ge=1, le=100, description="Items per page")] = 50,
    cursor: Annotated[
        str | None,
        Query(max_length=18, pattern=r"^[0-9]{1,18}$", description="`next_cursor` of the previous page"),
    ] = None,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match", max_length=200)] = None,
) -> Response:
    """The page as rendered once per catalog version, with its ETag. Usually answered by the lean path in
    front of FastAPI (center.api.lean), which calls the same two functions below; this route answers what
    that path leaves to it (validation errors, unusual query strings, a catalog error)."""
    return listing_response(await current_listing(catalog, limit, cursor), if_none_match)


async def current_listing(catalog: CatalogService, limit: int, cursor: str | None) -> Listing:
    """`catalog.listing` with its one version check on the event loop on SQLite, in the thread pool on
    PostgreSQL (no per-request model validation or serialization)."""
    if catalog.listing_inline:
        return catalog.listing(limit, cursor)
    return await run_in_threadpool(catalog.listing, limit, cursor)


def listing_response(listing: Listing, if_none_match: str | None) -> Response:
    """The page's bytes with its strong ETag, or 304 when `If-None-Match` names that ETag."""
    headers = {"ETag": listing.etag, "Cache-Control": "no-cache"}
    if none_match(if_none_match, listing.etag):
        return Response(status_code=304, headers=headers)
    return Response(listing.body, media_type="application/json", headers=headers)


@router.get(
    "/v1/items/{item_id}",
    response_model=ItemDetail,
    responses=problem_responses("not-found", "service-unavailable"),
)
def get_item(item_id: ItemIdPath, catalog: CatalogDep) -> ItemDetail:
    return catalog.get_item(item_id)


_PREVIEW_RESPONSES = {
    200: {
        "description": "The whole preview",
        "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in PREVIEW_MEDIA_TYPES},
    },
    206: {
        "description": "One byte range of the preview (Range: bytes=…)",
        "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in PREVIEW_MEDIA_TYPES},
    },
    304: {"description": "Not modified (If-None-Match matched the ETag)"},
    **problem_responses("not-found", "range-not-satisfiable", "service-unavailable"),
}


@router.get("/v1/items/{item_id}/previews/{n}", response_class=Response, responses=_PREVIEW_RESPONSES)  # type: ignore[arg-type]
async def get_preview(
    item_id: ItemIdPath,
    n: Annotated[int, Path(ge=0, le=15, description="Preview number, from 0")],
    catalog: CatalogDep,
    range_header: Annotated[str | None, Header(alias="Range", max_length=200)] = None,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match", max_length=200)] = None,
    if_range: Annotated[str | None, Header(alias="If-Range", max_length=200)] = None,
) -> Response:
    def answer() -> Response:  # one trip to the thread pool: look up, then read the bytes
        preview = catalog.get_preview(item_id, n)
        etag = f'"{preview.sha256}"'
        headers = {"ETag": etag, "Cache-Control": "public, max-age=86400", "Accept-Ranges": "bytes"}
        if none_match(if_none_match, etag):
            return Response(status_code=304, headers=headers)
        span = parse_range(range_header, preview.length) if if_range in (None, etag) else None
        start, end = span if span is not None else (0, preview.length)
        if span is not None:
            headers["Content-Range"] = content_range(span, preview.length)
        data = catalog.read_preview(preview, start, end)
        status = 206 if span is not None else 200
        return Response(data, status_code=status, media_type=preview.media_type, headers=headers)

    return await run_in_threadpool(answer)
