"""protocol.http.problems and its ASGI adapter: problem+json (RFC 9457) built from the one registry, and the
center's and the device's handlers answering every shared error identically."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from center.api import problems as center_problems
from device_os.api import problems as device_problems
from protocol.http.asgi import framework_problem, problem_response
from protocol.http.errors import HttpProblem, RangeNotSatisfiable
from protocol.http.problems import (
    PASSED_HEADERS,
    RESERVED_MEMBERS,
    STATUS_SLUGS,
    build,
    slug_for_status,
    status_problem,
    validation_problem,
)
from protocol.problems import PROBLEM_CONTENT_TYPE, REGISTRY, ProblemDetails

Handler = Callable[[Request, Exception], Awaitable[Response]]
HANDLERS: dict[str, Handler] = {"center": center_problems.handle, "device": device_problems.handle}


def _request() -> Request:
    return Request({"type": "http", "method": "GET", "path": "/v1/x", "headers": [], "query_string": b""})


def _answer(response: Response) -> tuple[int, dict[str, Any], dict[str, str]]:
    return response.status_code, json.loads(bytes(response.body)), dict(response.headers)


@pytest.mark.parametrize("slug", sorted(REGISTRY))
def test_every_registered_type_builds_an_rfc9457_document(slug: str) -> None:
    answer = build(slug, "what went wrong", extra=1)
    t = REGISTRY[slug]
    assert answer.status == t.status == answer.body["status"]  # §3.1.3: the same as the HTTP status
    assert answer.body == {
        "type": t.uri,
        "title": t.title,
        "status": t.status,
        "detail": "what went wrong",
        "extra": 1,
    }
    assert ProblemDetails.model_validate(answer.body).type == t.uri
    assert answer.headers == {"Cache-Control": "no-store"}


def test_no_detail_no_member_and_headers_kept() -> None:
    answer = build("service-unavailable", None, {"Retry-After": "5"})
    assert "detail" not in answer.body
    assert answer.headers == {"Cache-Control": "no-store", "Retry-After": "5"}


@pytest.mark.parametrize("member", sorted(RESERVED_MEMBERS))
def test_extensions_cannot_replace_reserved_members(member: str) -> None:
    with pytest.raises(ValueError, match="may not replace"):
        build("not-found", "x", **{member: "forged"})


def test_instance_is_allowed_and_unknown_slugs_are_programming_errors() -> None:
    assert build("not-found", instance="/v1/items/x").body["instance"] == "/v1/items/x"
    with pytest.raises(KeyError):
        build("no-such-problem")


def test_status_slugs_are_registered_with_their_status() -> None:
    for status, slug in STATUS_SLUGS.items():
        assert REGISTRY[slug].status == status
    assert slug_for_status(418) == "bad-request"
    assert slug_for_status(502) == "internal-error"


def test_status_problem_passes_only_meaningful_headers_and_hides_5xx_detail() -> None:
    answer = status_problem(
        405, "Method Not Allowed", {"Allow": "GET", "X-Debug": "secret", "Set-Cookie": "a=b"}
    )
    assert answer.headers == {"Cache-Control": "no-store", "Allow": "GET"}
    assert answer.body["detail"] == "Method Not Allowed"
    assert status_problem(401, None, {"WWW-Authenticate": "Bearer"}).headers["WWW-Authenticate"] == "Bearer"
    assert status_problem(503, "db at 10.0.0.7 down").body == {
        "type": "urn:coffer:problem:service-unavailable",
        "title": REGISTRY["service-unavailable"].title,
        "status": 503,
    }
    assert "detail" not in status_problem(404, {"not": "a string"}).body
    assert {"allow", "www-authenticate", "retry-after"} == PASSED_HEADERS


def test_validation_problem_never_echoes_input() -> None:
    answer = validation_problem(
        [{"loc": ("body", "pin", 0), "msg": "bad", "type": "string_type", "input": "123456", "ctx": {"x": 1}}]
    )
    assert answer.status == 422
    assert answer.body["errors"] == [{"loc": ["body", "pin", "0"], "msg": "bad", "type": "string_type"}]
    assert "123456" not in json.dumps(answer.body)


def test_problem_response_media_type() -> None:
    status, body, headers = _answer(problem_response("not-found", "no item"))
    assert (status, body["type"]) == (404, "urn:coffer:problem:not-found")
    assert headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert headers["cache-control"] == "no-store"


def test_framework_problem_leaves_other_errors_to_the_program() -> None:
    assert framework_problem(RuntimeError("x")) is None
    assert framework_problem(ValueError("x")) is None


class _Pin(BaseModel):
    pin: str


_BAD_PIN = [{"loc": ("body", "pin"), "msg": "m", "type": "t", "input": "999999"}]
_ALLOW = {"Allow": "GET"}
_BEARER = {"WWW-Authenticate": "Bearer"}
SHARED_ERRORS: list[tuple[Exception, int, str, dict[str, str]]] = [
    (RangeNotSatisfiable(0), 416, "range-not-satisfiable", {"content-range": "bytes */0"}),
    (RangeNotSatisfiable(1234), 416, "range-not-satisfiable", {"content-range": "bytes */1234"}),
    (HttpProblem("plain"), 400, "bad-request", {}),
    (StarletteHTTPException(404, "Not Found"), 404, "not-found", {}),
    (StarletteHTTPException(405, "Method Not Allowed", _ALLOW), 405, "method-not-allowed", {"allow": "GET"}),
    (StarletteHTTPException(401, "no", _BEARER), 401, "unauthorized", {"www-authenticate": "Bearer"}),
    (StarletteHTTPException(413), 413, "payload-too-large", {}),
    (StarletteHTTPException(416), 416, "range-not-satisfiable", {}),
    (StarletteHTTPException(421), 421, "misdirected-request", {}),
    (StarletteHTTPException(429, "slow", {"Retry-After": "3"}), 429, "rate-limited", {"retry-after": "3"}),
    (StarletteHTTPException(418, "teapot", {"X-Debug": "leak"}), 400, "bad-request", {}),
    (StarletteHTTPException(502, "upstream secret"), 500, "internal-error", {}),
    (RequestValidationError(_BAD_PIN), 422, "validation-error", {}),
]


@pytest.mark.parametrize(("exc", "status", "slug", "headers"), SHARED_ERRORS)
def test_center_and_device_answer_shared_errors_identically(
    exc: Exception, status: int, slug: str, headers: dict[str, str]
) -> None:
    """The copies used to disagree (the center passed every header and mapped 401 to bad-request; the device
    mapped 416 and 429 to bad-request and the center sent no `Cache-Control`): now one answer."""
    answers = {name: _answer(asyncio.run(handle(_request(), exc))) for name, handle in HANDLERS.items()}
    center, device = answers["center"], answers["device"]
    assert center == device
    got_status, body, got_headers = center
    assert (got_status, body["status"], body["type"]) == (status, status, f"urn:coffer:problem:{slug}")
    assert got_headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert got_headers["cache-control"] == "no-store"
    for name, value in headers.items():
        assert got_headers[name] == value
    assert "x-debug" not in got_headers
    assert "secret" not in json.dumps(body)
    assert "999999" not in json.dumps(body)


def test_a_416_over_http_from_a_route() -> None:
    """Raised in a route, answered by a program's handler through a real ASGI stack."""
    app = FastAPI()
    center_problems.install(app)

    @app.get("/blob")
    def blob() -> None:
        raise RangeNotSatisfiable(7)

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return await client.get("/blob")

    r = asyncio.run(call())
    assert r.status_code == 416
    assert r.headers["content-range"] == "bytes */7"
    assert r.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert r.json()["type"] == "urn:coffer:problem:range-not-satisfiable"
