"""The one exception handler (STYLE.md item 8): every error becomes application/problem+json (RFC 9457).

Covers the center's own errors, the shared HTTP errors (`protocol.http.asgi.framework_problem`: a 416 Range,
FastAPI/Starlette's 404/405/4xx, request validation 422), and anything unexpected (500 internal-error,
details logged, never sent).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from center.errors import CenterError
from protocol.http.asgi import framework_problem, problem_response
from protocol.http.errors import HttpProblem

log = logging.getLogger("center.api")


async def handle(request: Request, exc: Exception) -> Response:
    """Map any exception to problem+json."""
    if isinstance(exc, CenterError):
        if exc.slug == "internal-error":
            log.error("center error on %s %s: %s", request.method, request.url.path, exc.message)
            return problem_response("internal-error")
        headers = {"Retry-After": "5"} if exc.slug == "service-unavailable" else getattr(exc, "headers", None)
        return problem_response(exc.slug, exc.message, headers, **exc.extensions)
    shared = framework_problem(exc)
    if shared is not None:
        return shared
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response("internal-error")


def install(app: FastAPI) -> None:
    for cls in (CenterError, HttpProblem, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(cls, handle)
