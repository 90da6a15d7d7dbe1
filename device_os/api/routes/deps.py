"""Route dependencies: the service and the wallet the gate authenticated."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from device_os.api.errors import Unauthorized
from device_os.api.service import DeviceService
from device_os.core.wallet import Wallet


def get_service(request: Request) -> DeviceService:
    service: DeviceService = request.app.state.service
    return service


def get_wallet(request: Request) -> Wallet:
    wallet = getattr(request.state, "wallet", None)
    if not isinstance(wallet, Wallet):  # only the gate sets it, for TOKEN routes
        raise Unauthorized("a bearer token from POST /v1/unlock is required")
    return wallet


ServiceDep = Annotated[DeviceService, Depends(get_service)]
WalletDep = Annotated[Wallet, Depends(get_wallet)]
