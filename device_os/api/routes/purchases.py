"""Purchases (DESIGN.md flow 5.3): the moment a purchase becomes content on the board."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from pydantic import Field

from device_os.api.purchase_service import import_purchase
from device_os.api.routes.deps import WalletDep
from device_os.core.answers import PurchaseAnswer

router = APIRouter(prefix="/v1", tags=["purchases"])

#: The order JWS as sent in `Coffer-Order` (the core verifies it).
OrderHeader = Annotated[str, Field(min_length=5, max_length=12288, pattern=r"^[A-Za-z0-9_.-]+$")]
_STREAM_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The center's content stream v1 for the order, raw (not multipart)",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.post("/purchases", openapi_extra=_STREAM_BODY)
async def purchase(
    request: Request,
    wallet: WalletDep,
    coffer_order: Annotated[OrderHeader, Header(alias="Coffer-Order")],
    mode: Annotated[Literal["now", "deferred"], Query()] = "now",
    repurchase: Annotated[bool, Query()] = False,
) -> PurchaseAnswer:
    """Verify the order, stream the content into the vault (decrypt, SHA-256 and length check,
    re-encrypt under the DEK; `deferred`: keep the center's stream and the wrapped Ke), then one commit:
    debits, the payment signed in the TPM and sealed to the center, outbox and library entries. The same
    order again answers the same bytes without reading the body; once its receipt cleared the outbox: 409
    `order-settled`."""
    return await import_purchase(request, wallet, coffer_order, mode=mode, repurchase=repurchase)
