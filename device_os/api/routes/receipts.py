"""Receipts and the outbox (DESIGN.md flow 5.4-5.5)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from device_os.api.models import CompactJws
from device_os.api.purchase_service import order_id_of
from device_os.api.routes.deps import WalletDep
from device_os.core.body import OutboxEntry

router = APIRouter(prefix="/v1", tags=["purchases"])


class ReceiptRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    receipt: CompactJws  # a `coffer-receipt` JWS from the center


class ReceiptAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    order_id: str
    counter: int


class OutboxAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    entries: list[OutboxEntry]  # payments without a receipt, oldest counter first


@router.post("/receipts")
def receipt(body: ReceiptRequest, wallet: WalletDep) -> ReceiptAnswer:
    """Verify the center's receipt and clear its outbox entry (one commit; the same receipt again is a no-op).
    Afterwards the same order posted to /v1/purchases gets 409 `order-settled`."""
    wallet.apply_receipt(body.receipt)
    return ReceiptAnswer(order_id=order_id_of(body.receipt), counter=wallet.view().counter)


@router.get("/outbox")
def outbox(wallet: WalletDep) -> OutboxAnswer:
    """Sealed payments waiting for a receipt (`terminal_cli sync` re-sends them to the center)."""
    return OutboxAnswer(entries=sorted(wallet.outbox(), key=lambda e: e.counter))
