"""`POST /v1/statements` (DESIGN.md flow 7): a signed device statement compared with the ledger."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from center.api.deps import ContextDep, DeviceDep
from center.api.openapi import problem_responses
from protocol.center_api import StatementAnswer, StatementRequest

router = APIRouter(tags=["statements"])


@router.post(
    "/v1/statements",
    response_model=StatementAnswer,
    responses=problem_responses(
        "unauthorized", "invalid-signature", "wrong-device", "conflict", "not-found", "service-unavailable"
    ),
)
async def submit(body: StatementRequest, device: DeviceDep, context: ContextDep) -> StatementAnswer:
    """Store the statement and the differences between it and the ledger."""
    return await run_in_threadpool(context.statements.submit, body.statement, device)
