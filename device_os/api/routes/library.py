"""The library (DESIGN.md flow 5.6): owned items, their plaintext streamed out (Range), deletion."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Response
from pydantic import BaseModel, ConfigDict

from device_os.api.routes.deps import WalletDep
from device_os.api.streaming import OCTET_STREAM, content_response, parse_range
from device_os.core.body import LibraryEntry
from device_os.core.wallet import Wallet
from device_os.errors import NotFound
from protocol.pricing import ItemId

router = APIRouter(prefix="/v1", tags=["library"])

ItemPath = Annotated[ItemId, Path()]
_BINARY: dict[str, Any] = {"content": {OCTET_STREAM: {"schema": {"type": "string", "format": "binary"}}}}


class LibraryItem(BaseModel):
    """One owned item (public: no blob name, no wrapped key)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    item_id: str
    order_id: str
    mode: Literal["now", "deferred"]  # deferred: still the center's stream; re-encrypted at first open
    length: int
    sha256: str


class LibraryAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    items: list[LibraryItem]


def _entry(wallet: Wallet, item_id: str) -> LibraryEntry:
    entry = wallet.body.library.get(item_id)
    if entry is None:
        raise NotFound(f"item {item_id} is not in the library")
    return entry


@router.get("/library")
def library(wallet: WalletDep) -> LibraryAnswer:
    """Every owned item, sorted by item_id."""
    entries = sorted(wallet.library(), key=lambda e: e.item_id)
    return LibraryAnswer(
        items=[
            LibraryItem(item_id=e.item_id, order_id=e.order_id, mode=e.mode, length=e.length, sha256=e.sha256)
            for e in entries
        ]
    )


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
    wallet: WalletDep,
    range_: Annotated[str | None, Header(alias="Range", max_length=256)] = None,
) -> Response:
    """The item's plaintext, decrypted as it is sent; one `Range: bytes=a-b | a- | -n` gives 206 (416 when it
    selects nothing). A deferred item's first open re-encrypts it under the DEK in one commit."""
    entry = _entry(wallet, item)
    return await content_response(wallet, entry, parse_range(range_, entry.length))


@router.delete("/library/{item}", status_code=204, response_class=Response)
def delete(item: ItemPath, wallet: WalletDep) -> Response:
    """Remove the item from the library (one commit), then its blob; its payment and receipt stay."""
    wallet.delete_item(item)
    return Response(status_code=204)
