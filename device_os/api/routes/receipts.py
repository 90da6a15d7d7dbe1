"""Receipts and the outbox (DESIGN.md flow 5.4-5.5)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from device_os.api.models import CompactJws, OutboxAnswer, ReceiptAnswer
from device_os.api.routes.deps import ServiceDep, WalletDep

router = APIRouter(prefix="/v1", tags=["purchases"])


class ReceiptRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    receipt: CompactJws  # a `coffer-receipt` JWS from the center


@router.post("/receipts")
def receipt(body: ReceiptRequest, service: ServiceDep, wallet: WalletDep) -> ReceiptAnswer:
    """Verify the center's receipt and clear its outbox entry (one commit; the same receipt again is a no-op).
    Afterwards the same order posted to /v1/purchases gets 409 `order-settled`."""
    return service.apply_receipt(wallet, body.receipt)


@router.get("/outbox")
def outbox(service: ServiceDep, wallet: WalletDep) -> OutboxAnswer:
    """Sealed payments waiting for a receipt (`terminal_cli sync` re-sends them to the center)."""
    return service.outbox(wallet)
