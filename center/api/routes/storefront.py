"""The storefront (flow 4 "Browse"): server-rendered HTML, `/` and `/items/{item_id}`, no scripts."""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from center.api.deps import CatalogDep, ContextDep
from center.api.openapi import problem_responses

router = APIRouter(tags=["storefront"])
STATIC = FsPath(__file__).resolve().parent.parent.parent / "static"
_HTML: dict[int | str, dict[str, Any]] = {
    200: {"description": "An HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}
}


@router.get("/", response_class=HTMLResponse, responses={**_HTML, **problem_responses("bad-request")})
async def storefront(
    context: ContextDep,
    catalog: CatalogDep,
    cursor: Annotated[str | None, Query(max_length=18, pattern=r"^[0-9]{1,18}$")] = None,
) -> HTMLResponse:
    page = await run_in_threadpool(catalog.list_items, context.settings.storefront_page_size, cursor)
    excerpts = await run_in_threadpool(catalog.excerpts, page.items)
    html = context.templates.get_template("index.html").render(page=page, excerpts=excerpts, title="Coffer")
    return HTMLResponse(html, headers={"Cache-Control": "no-cache"})


@router.get(
    "/items/{item_id}", response_class=HTMLResponse, responses={**_HTML, **problem_responses("not-found")}
)
async def item_page(
    context: ContextDep, catalog: CatalogDep, item_id: Annotated[str, Path(min_length=1, max_length=64)]
) -> HTMLResponse:
    item = await run_in_threadpool(catalog.get_item, item_id)
    excerpts = await run_in_threadpool(catalog.excerpts, [item])
    html = context.templates.get_template("item.html").render(item=item, excerpts=excerpts, title=item.title)
    return HTMLResponse(html, headers={"Cache-Control": "no-cache"})


@router.get(
    "/static/style.css",
    response_class=Response,
    responses={
        200: {"description": "The stylesheet", "content": {"text/css": {"schema": {"type": "string"}}}}
    },
)
async def stylesheet() -> Response:
    css = await run_in_threadpool((STATIC / "style.css").read_bytes)
    return Response(css, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})
