"""The library (DESIGN.md flow 5.6): owned items, their plaintext streamed out (Range), deletion."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Response

from device_os.api.models import LibraryAnswer
from device_os.api.routes.deps import ServiceDep, WalletDep
from device_os.api.streaming import OCTET_STREAM, content_response
from protocol.pricing import ItemId

router = APIRouter(prefix="/v1", tags=["library"])

ItemPath = Annotated[ItemId, Path()]
_BINARY: dict[str, Any] = {"content": {OCTET_STREAM: {"schema": {"type": "string", "format": "binary"}}}}


@router.get("/library")
def library(service: ServiceDep, wallet: WalletDep) -> LibraryAnswer:
    """Every owned item, sorted by item_id."""
    return service.library(wallet)


@router.get(
    "/library/{item}/content",
    response_class=Response,
    responses={
        200: {"description": "The whole plaintext", **_BINARY},
        206: {"description": "A byte range", **_BINARY},
    },
)
async def content(
    item: ItemPath,
    service: ServiceDep,
    wallet: WalletDep,
    range_: Annotated[str | None, Header(alias="Range", max_length=256)] = None,
) -> Response:
    """The item's plaintext, decrypted as it is sent; one `Range: bytes=a-b | a- | -n` gives 206 (416 when it
    selects nothing). A deferred item's first open re-encrypts it under the DEK in one commit."""
    return await content_response(service.open_content(wallet, item, range_))


@router.delete("/library/{item}", status_code=204, response_class=Response)
def delete(item: ItemPath, service: ServiceDep, wallet: WalletDep) -> Response:
    """Remove the item from the library (one commit), then its blob; its payment and receipt stay."""
    service.delete_item(wallet, item)
    return Response(status_code=204)
