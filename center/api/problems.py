"""The one exception handler (STYLE.md item 8): every error becomes application/problem+json (RFC 9457).

Covers the center's own errors, FastAPI/Starlette's 404/405/4xx, request validation (422), and anything
unexpected (500 internal-error, details logged, never sent).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from center.errors import CenterError, RangeNotSatisfiableError
from protocol.problems import PROBLEM_CONTENT_TYPE, problem_body

log = logging.getLogger("center.api")

_STATUS_SLUGS = {
    400: "bad-request",
    404: "not-found",
    405: "method-not-allowed",
    413: "payload-too-large",
    415: "unsupported-media-type",
    416: "range-not-satisfiable",
    422: "validation-error",
    429: "rate-limited",
    503: "service-unavailable",
}


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_CONTENT_TYPE


def _problem(slug: str, detail: str | None, headers: dict[str, str] | None = None, **ext: object) -> Response:
    body = problem_body(slug, detail, **ext)
    return ProblemResponse(body, status_code=body["status"], headers=headers)


async def handle(request: Request, exc: Exception) -> Response:
    """Map any exception to problem+json."""
    if isinstance(exc, RangeNotSatisfiableError):
        return _problem(exc.slug, exc.message, {"Content-Range": f"bytes */{exc.length}"})
    if isinstance(exc, CenterError):
        if exc.slug == "internal-error":
            log.error("center error on %s %s: %s", request.method, request.url.path, exc.message)
            return _problem("internal-error", None)
        headers = {"Retry-After": "5"} if exc.slug == "service-unavailable" else getattr(exc, "headers", None)
        return _problem(exc.slug, exc.message, headers, **exc.extensions)
    if isinstance(exc, RequestValidationError):
        errors = [
            {
                "loc": [str(p) for p in e.get("loc", ())],
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
            for e in exc.errors()
        ]
        return _problem("validation-error", "the request does not match the API", errors=errors)
    if isinstance(exc, StarletteHTTPException):
        slug = _STATUS_SLUGS.get(
            exc.status_code, "bad-request" if exc.status_code < 500 else "internal-error"
        )
        detail = exc.detail if isinstance(exc.detail, str) and exc.status_code < 500 else None
        return _problem(slug, detail, dict(exc.headers) if exc.headers else None)
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _problem("internal-error", None)


def install(app: FastAPI) -> None:
    for cls in (CenterError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(cls, handle)
