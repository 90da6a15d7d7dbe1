"""FastAPI dependencies: the shared context and its services (async: no thread-pool hop for a lookup)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from center.api.context import CenterContext
from center.db import tx
from center.errors import UnauthorizedError
from center.services.catalog import CatalogService
from center.services.common import device_for_token

bearer = HTTPBearer(auto_error=False, description="The device token from the enrollment answer")


async def get_context(request: Request) -> CenterContext:
    context: CenterContext = request.app.state.center
    return context


async def get_catalog(context: Annotated[CenterContext, Depends(get_context)]) -> CatalogService:
    return context.catalog


ContextDep = Annotated[CenterContext, Depends(get_context)]
CatalogDep = Annotated[CatalogService, Depends(get_catalog)]


async def get_device(
    context: ContextDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> str:
    """The device_id whose bearer token the request carries (401 unauthorized otherwise)."""
    if (
        credentials is None
        or credentials.scheme.lower() != "bearer"
        or not 20 <= len(credentials.credentials) <= 128
    ):
        raise UnauthorizedError("a device token is required: Authorization: Bearer <token>")
    token = credentials.credentials

    def lookup() -> str:
        with tx.read(context.commerce.sessions) as session:
            return device_for_token(session, token)

    return await run_in_threadpool(lookup)


DeviceDep = Annotated[str, Depends(get_device)]
