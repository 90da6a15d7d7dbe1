"""Credential activation and enrollment (DESIGN.md flow 3)."""

from __future__ import annotations

from fastapi import APIRouter

from device_os.api.models import ActivateAnswer, ActivateRequest, EnrollmentAnswer, EnrollmentRequest
from device_os.api.routes.deps import ServiceDep, WalletDep

router = APIRouter(prefix="/v1", tags=["enrollment"])


@router.post("/activate")
def activate(body: ActivateRequest, service: ServiceDep, _wallet: WalletDep) -> ActivateAnswer:
    """TPM2_ActivateCredential (attestation key, EK) on the center's MakeCredential output."""
    return service.activate(body.credential_blob, body.encrypted_secret)


@router.post("/enrollment")
def enrollment(body: EnrollmentRequest, service: ServiceDep, wallet: WalletDep) -> EnrollmentAnswer:
    """Accept a `coffer-enrollment` whose key set the pinned root signed (first use pins it, if none is
    configured); one commit."""
    return service.enroll(wallet, body.enrollment, body.root_jwk.model_dump())
