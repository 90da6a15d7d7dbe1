"""`create_app(settings, device)`: the device's HTTP API (DESIGN.md "Device API"); no work at import time.

    app = create_app(settings, Device.open(settings))

The app owns the bearer tokens and the auto-lock timer, not the device: whoever opened the device closes it
(`device_os.serve` does, after the server stopped: lock, then TPM2_Shutdown(STATE)).
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from device_os.api import access
from device_os.api.access import POLICIES, Access
from device_os.api.gate import Gate
from device_os.api.problems import handle
from device_os.api.routes import device as device_routes
from device_os.api.routes import enrollment as enrollment_routes
from device_os.api.routes import library as library_routes
from device_os.api.routes import purchases as purchase_routes
from device_os.api.routes import receipts as receipt_routes
from device_os.api.routes import wallet as wallet_routes
from device_os.api.service import DeviceService
from device_os.core.device import Device
from device_os.settings import DeviceSettings
from protocol.problems import PROBLEM_CONTENT_TYPE, ProblemDetails

log = logging.getLogger("device_os.api")
MAX_IDLE_CHECK_INTERVAL = 30.0


def software_version() -> str:
    try:
        return importlib.metadata.version("coffer")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def idle_check_interval(auto_lock_seconds: int) -> float:
    """How often the timer looks (a request also checks, so this only bounds how long the DEK may linger)."""
    return max(0.5, min(MAX_IDLE_CHECK_INTERVAL, auto_lock_seconds / 10))


def create_app(
    settings: DeviceSettings, device: Device, *, allowed_hosts: frozenset[str] | None = None
) -> FastAPI:
    """The API for `device`. `allowed_hosts` defaults to the settings' listen address (`ServiceSettings`)."""
    if allowed_hosts is None:
        hosts_of = getattr(settings, "allowed_hosts", None)
        if hosts_of is None:
            raise ValueError("allowed_hosts is required with plain DeviceSettings (no listen address)")
        allowed_hosts = frozenset(hosts_of())
    service = DeviceService(device, software_version=software_version())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tasks:
            if settings.auto_lock_seconds:
                tasks.start_soon(_auto_lock, service, idle_check_interval(settings.auto_lock_seconds))
            try:
                yield
            finally:
                tasks.cancel_scope.cancel()
        service.shutdown()

    app = FastAPI(
        title="Coffer device API",
        version=service.software_version,
        summary="The narrow HTTP API of the Coffer USB board (DESIGN.md 'Device API').",
        docs_url=None,  # no HTML docs: they would load scripts from a CDN; /openapi.json is published
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.service = service
    for router in (device_routes.router, enrollment_routes.router, wallet_routes.router):
        app.include_router(router)
    for router in (purchase_routes.router, receipt_routes.router, library_routes.router):  # issue 7
        app.include_router(router)
    access.enforce(app)
    for cls in (StarletteHTTPException, RequestValidationError):
        app.add_exception_handler(cls, handle)
    app.add_middleware(Gate, routes=access.route_keys(app), service=service, allowed_hosts=allowed_hosts)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


async def _auto_lock(service: DeviceService, interval: float) -> None:
    while True:
        await anyio.sleep(interval)
        try:
            await anyio.to_thread.run_sync(service.check_idle)
        except Exception as exc:  # the timer must survive a TPM hiccup; the next tick tries again
            log.warning("auto-lock check failed: %s", type(exc).__name__)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus what the table and the handler imply: bearer security on `TOKEN` routes and
    problem+json for every error (FastAPI's own 422 schema is replaced)."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearer"] = {"type": "http", "scheme": "bearer"}
    components.setdefault("schemas", {})["Problem"] = ProblemDetails.model_json_schema()
    for name in ("HTTPValidationError", "ValidationError"):
        components["schemas"].pop(name, None)
    problem = {
        "description": "An error (RFC 9457 problem details; `type` from the shared registry)",
        "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            policy = POLICIES.get((method.upper(), path))
            if policy is not None and policy.access is Access.TOKEN:
                operation["security"] = [{"bearer": []}]
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            responses["default"] = problem
    app.openapi_schema = schema
    return schema
