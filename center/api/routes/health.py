"""`GET /v1/health` (DESIGN.md "Center API"): the service and its database answer."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from center.api.deps import ContextDep
from center.api.openapi import problem_responses
from center.db.engine import ping
from protocol.api.catalog import Health

router = APIRouter(tags=["health"])


@router.get("/v1/health", response_model=Health, responses=problem_responses("service-unavailable"))
async def health(context: ContextDep) -> Health:
    await run_in_threadpool(ping, context.engine)
    return Health(status="ok", database="ok")
