"""`POST /v1/credits/redeem` (DESIGN.md flow 6): a one-time code → the signed credit, once per code."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from center.api.deps import ContextDep, DeviceDep
from center.api.openapi import problem_responses
from protocol.center_api import CreditAnswer, RedeemRequest

router = APIRouter(tags=["credits"])


@router.post(
    "/v1/credits/redeem",
    response_model=CreditAnswer,
    responses=problem_responses(
        "unauthorized",
        "not-found",
        "wrong-device",
        "message-expired",
        "device-revoked",
        "service-unavailable",
    ),
)
async def redeem(body: RedeemRequest, device: DeviceDep, context: ContextDep) -> CreditAnswer:
    """The credit the code stands for, signed for the device (the same answer for the same code again)."""
    return await run_in_threadpool(context.credits.redeem, body, device)
