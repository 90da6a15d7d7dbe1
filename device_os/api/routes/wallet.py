"""Credits, the wallet and statements (DESIGN.md flows 6, 7)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from device_os.api.models import CreditRequest, Nonce, StatementAnswer
from device_os.api.routes.deps import ServiceDep, WalletDep
from device_os.core.answers import CreditAnswer, WalletView

router = APIRouter(prefix="/v1", tags=["wallet"])


@router.post("/credits")
def apply_credit(body: CreditRequest, service: ServiceDep, wallet: WalletDep) -> CreditAnswer:
    """Apply a `coffer-credit` once (one commit); replays and other devices' credits change nothing."""
    return service.apply_credit(wallet, body.credit)


@router.get("/wallet")
def wallet_view(service: ServiceDep, wallet: WalletDep) -> WalletView:
    """Purses, counter, time floor, outbox order ids, enrollment."""
    return service.wallet_view(wallet)


@router.get("/statement")
def statement(nonce: Annotated[Nonce, Query()], service: ServiceDep, wallet: WalletDep) -> StatementAnswer:
    """A `coffer-statement` over the center's nonce, signed in the TPM (no commit)."""
    return StatementAnswer(statement=service.statement(wallet, nonce))
