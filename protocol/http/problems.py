"""Problem answers (RFC 9457) for the center and the device, from the one registry (`protocol.problems`).

    answer = build("not-found", "no item 'x'")           # status 404, body, headers
    answer = status_problem(405, "Method Not Allowed", {"Allow": "GET"})
    answer = validation_problem(pydantic_errors)

A body carries the registry's `type`, `title` and `status` (equal to the answer's status, RFC 9457 §3.1.3),
a `detail` written by our own code, and extension members; never an input value, a stack trace or a secret.
Every problem answer is `Cache-Control: no-store`. `protocol.http.asgi` turns an answer into a response.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from protocol.problems import REGISTRY, problem_body

__all__ = [
    "PASSED_HEADERS",
    "RESERVED_MEMBERS",
    "STATUS_SLUGS",
    "ProblemAnswer",
    "build",
    "slug_for_status",
    "status_problem",
    "validation_problem",
]

#: RFC 9457 §3.1 members fixed by the registry: no extension may replace them (`detail` is an argument).
RESERVED_MEMBERS = frozenset({"type", "title", "status"})
#: The problem type of a bare HTTP status (a framework's 404, 405, 413, ...); others: bad-request below 500,
#: internal-error from 500.
STATUS_SLUGS: Mapping[int, str] = {
    400: "bad-request",
    401: "unauthorized",
    404: "not-found",
    405: "method-not-allowed",
    413: "payload-too-large",
    415: "unsupported-media-type",
    416: "range-not-satisfiable",
    421: "misdirected-request",
    422: "validation-error",
    429: "rate-limited",
    503: "service-unavailable",
}
#: Headers of a framework's HTTP error passed on (lower case): those RFC 9110 pairs with its statuses
#: (405 Allow, 401 WWW-Authenticate, 429/503 Retry-After). Nothing else is copied.
PASSED_HEADERS = frozenset({"allow", "www-authenticate", "retry-after"})


@dataclass(frozen=True)
class ProblemAnswer:
    """An HTTP answer: its status, the problem document and the response headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def build(
    slug: str, detail: str | None = None, headers: Mapping[str, str] | None = None, **extensions: Any
) -> ProblemAnswer:
    """The answer for registered problem `slug`; an unknown slug or an extension named like a reserved member
    is a programming error (KeyError, ValueError)."""
    clash = RESERVED_MEMBERS & extensions.keys()
    if clash:
        raise ValueError(f"extension members may not replace {sorted(clash)}")
    body = problem_body(slug, detail, **extensions)
    return ProblemAnswer(REGISTRY[slug].status, body, {"Cache-Control": "no-store", **(headers or {})})


def slug_for_status(status: int) -> str:
    return STATUS_SLUGS.get(status, "bad-request" if status < 500 else "internal-error")


def status_problem(
    status: int, detail: object = None, headers: Mapping[str, str] | None = None
) -> ProblemAnswer:
    """A framework's bare HTTP error: its registry type; its detail only if a string below 500; only
    `PASSED_HEADERS`."""
    text = detail if isinstance(detail, str) and status < 500 else None
    passed = {name: value for name, value in (headers or {}).items() if name.lower() in PASSED_HEADERS}
    return build(slug_for_status(status), text, passed)


def validation_problem(errors: Iterable[Mapping[str, Any]]) -> ProblemAnswer:
    """422 validation-error listing where and why (`loc`, `msg`, `type`) of each pydantic-style error; its
    `input` and `ctx` are dropped: they would echo the request (a PIN, a token) back."""
    listed = [
        {
            "loc": [str(part) for part in error.get("loc", ())],
            "msg": str(error.get("msg", "")),
            "type": str(error.get("type", "")),
        }
        for error in errors
    ]
    return build("validation-error", "the request does not match the API", errors=listed)
