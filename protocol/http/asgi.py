"""The one adapter between `protocol.http` and Starlette/FastAPI (the only module here that imports them).

    return problem_response("not-found", "no item 'x'")       # application/problem+json
    response = framework_problem(exc)                          # None: the program maps `exc` itself
    keys = route_keys(app)                                     # for protocol.http.access

Each program keeps its own exception handler for its own error tree and for the unexpected (what to log is
its decision) and calls `framework_problem` for the errors both share: `HttpProblem` (416 ...), FastAPI's
request validation (422) and Starlette's HTTP errors (404, 405, 413, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from protocol.http.access import RouteKey
from protocol.http.errors import HttpProblem
from protocol.http.problems import ProblemAnswer, build, status_problem, validation_problem
from protocol.problems import PROBLEM_CONTENT_TYPE

__all__ = ["ProblemResponse", "framework_problem", "problem_response", "respond", "route_keys"]


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_CONTENT_TYPE


def respond(answer: ProblemAnswer) -> Response:
    return ProblemResponse(answer.body, status_code=answer.status, headers=answer.headers)


def problem_response(
    slug: str, detail: str | None = None, headers: Mapping[str, str] | None = None, **extensions: Any
) -> Response:
    """application/problem+json for registered problem `slug` (`protocol.http.problems.build`)."""
    return respond(build(slug, detail, headers, **extensions))


def framework_problem(exc: Exception) -> Response | None:
    """The answer to an error both programs share, or None for any other exception."""
    if isinstance(exc, HttpProblem):
        return problem_response(exc.slug, exc.detail, exc.headers)
    if isinstance(exc, RequestValidationError):
        return respond(validation_problem(exc.errors()))
    if isinstance(exc, StarletteHTTPException):
        return respond(status_problem(exc.status_code, exc.detail, exc.headers))
    return None


def route_keys(app: Starlette) -> set[RouteKey]:
    """(method, path template) of every route `app` serves, included routers flattened; HEAD is implied by
    GET; a mount or websocket (no methods) counts as "*" and needs a policy too."""
    keys: set[RouteKey] = set()
    for route in iter_route_contexts(app.routes):
        for method in route.methods or {"*"}:
            if method != "HEAD":
                keys.add((method, route.path or repr(route)))
    return keys
