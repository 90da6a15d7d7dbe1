"""Enrollment (DESIGN.md flow 3): `POST /v1/devices` (the device's identity → MakeCredential) and
`POST /v1/devices/{device_id}/activate` (the activated secret → enrollment, token, welcome credit)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from starlette.concurrency import run_in_threadpool

from center.api.deps import ContextDep
from center.api.openapi import problem_responses
from protocol.center_api import ActivateRequest, DeviceIdentity, EnrollmentAnswer, EnrollmentChallenge

router = APIRouter(tags=["enrollment"])
DeviceIdPath = Annotated[str, Path(pattern=r"^dev_[a-z2-7]{32}$", description="The device_id")]


@router.post(
    "/v1/devices",
    status_code=201,
    response_model=EnrollmentChallenge,
    responses=problem_responses("attestation-failed", "binding-conflict", "service-unavailable"),
)
async def enroll(identity: DeviceIdentity, context: ContextDep) -> EnrollmentChallenge:
    """Check the EK chain, the Certify evidence and the binding; answer MakeCredential for the device."""
    return await run_in_threadpool(context.enrollment.challenge, identity)


@router.post(
    "/v1/devices/{device_id}/activate",
    response_model=EnrollmentAnswer,
    responses=problem_responses(
        "attestation-failed", "binding-conflict", "device-revoked", "conflict", "service-unavailable"
    ),
)
async def activate(device_id: DeviceIdPath, body: ActivateRequest, context: ContextDep) -> EnrollmentAnswer:
    """The secret TPM2_ActivateCredential recovered: bind the device, answer its enrollment and token."""
    return await run_in_threadpool(context.enrollment.activate, device_id, body)
