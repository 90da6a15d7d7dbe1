"""Health, identity, setup, unlock, lock, PIN change (DESIGN.md flow 2, "Device API")."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from device_os.api.models import Health, Identity, PinChangeRequest, PinRequest, SetupAnswer, UnlockAnswer
from device_os.api.routes.deps import ServiceDep, WalletDep

router = APIRouter(prefix="/v1", tags=["device"])


@router.get("/health")
async def health(service: ServiceDep) -> Health:
    """Phase (not-provisioned, not-set-up, locked, unlocked, tampered) and tamper; no TPM command, no lock."""
    return service.health()


@router.get("/identity")
def identity(service: ServiceDep) -> Identity:
    """EK certificate, AK/KEM/payment keys, Certify evidence, AEAD; 409 `not-set-up` before setup."""
    return service.identity()


@router.post("/setup", status_code=status.HTTP_201_CREATED)
def setup(body: PinRequest, service: ServiceDep) -> SetupAnswer:
    """Flow 2, once: PIN-bound payment key, DEK sealed under the PIN, Certify evidence, the empty state."""
    return service.setup(body.pin)


@router.post("/unlock")
def unlock(body: PinRequest, service: ServiceDep) -> UnlockAnswer:
    """A new bearer token. Locked: the TPM checks the PIN. Unlocked: RAM does; three wrong in a row lock."""
    return service.unlock(body.pin)


@router.post("/lock", status_code=status.HTTP_204_NO_CONTENT)
def lock(service: ServiceDep, _wallet: WalletDep) -> Response:
    """Drop the DEK and the hot keys; every token dies."""
    service.lock()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/pin", status_code=status.HTTP_204_NO_CONTENT)
def change_pin(body: PinChangeRequest, service: ServiceDep, _wallet: WalletDep) -> Response:
    """Change the PIN; the old one is checked against RAM before the TPM is touched."""
    service.change_pin(body.old_pin, body.new_pin)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
