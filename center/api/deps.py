"""FastAPI dependencies: the shared context and its services (async: no thread-pool hop for a lookup)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from center.api.context import CenterContext
from center.db import tx
from center.errors import UnauthorizedError
from center.sealing import token_hash
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


def _token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if (
        credentials is None
        or credentials.scheme.lower() != "bearer"
        or not 20 <= len(credentials.credentials) <= 128
    ):
        raise UnauthorizedError("a device token is required: Authorization: Bearer <token>")
    return credentials.credentials


async def get_device(
    context: ContextDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> str:
    """The device_id whose bearer token the request carries (401 unauthorized otherwise)."""
    token = _token(credentials)

    def lookup() -> str:
        with tx.read(context.commerce.sessions) as session:
            return device_for_token(session, token)

    return await run_in_threadpool(lookup)


@dataclass(frozen=True)
class TokenDevice:
    """The token's device for a route whose service checks the token again inside its own transaction
    (orders, payments): `token_hash` goes to the service, which compares it with the locked device row."""

    device_id: str
    token_hash: str


async def get_token_device(
    context: ContextDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> TokenDevice:
    """Like `get_device`, but a token this process has seen is answered from `TokenHints` without a database
    read (the service re-checks it under its lock); an unknown one is looked up (401 if no device has it)."""
    token = _token(credentials)
    digest = token_hash(token)
    hints = context.commerce.tokens
    device_id = hints.get(digest)
    if device_id is None:

        def lookup() -> str:
            with tx.read(context.commerce.sessions) as session:
                return device_for_token(session, token)

        device_id = await run_in_threadpool(lookup)
        hints.remember(digest, device_id)
    return TokenDevice(device_id, digest)


T = TypeVar("T")


async def run_write(work: Callable[..., T], *args: object) -> T:
    """Run a write service call in the thread pool. On SQLite the calls waiting there are grouped into one
    transaction and one fsync (center.db.group); the database still serializes and checks every write."""
    return await run_in_threadpool(work, *args)


DeviceDep = Annotated[str, Depends(get_device)]
TokenDeviceDep = Annotated[TokenDevice, Depends(get_token_device)]
