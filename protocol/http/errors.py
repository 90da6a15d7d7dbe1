"""Errors of `protocol.http`.

    HttpProblem              the request gets this problem+json answer (`slug`, `detail`, `headers`)
    └── RangeNotSatisfiable  416 range-not-satisfiable, with `Content-Range: bytes */<length>`
    MissingPolicyError       (a RuntimeError) routes without an access policy: the app must not start

`HttpProblem` is raised in route code and answered by each program's one exception handler through
`protocol.http.asgi.framework_problem`.
"""

from __future__ import annotations

from typing import ClassVar


class HttpProblem(Exception):
    """An error whose HTTP answer is fixed: the registry slug, a detail written by our code, extra headers."""

    slug: ClassVar[str] = "bad-request"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = dict(headers or {})


class RangeNotSatisfiable(HttpProblem):
    """No byte of the representation is selected (RFC 9110 §15.5.17): 416 with `bytes */<length>`."""

    slug: ClassVar[str] = "range-not-satisfiable"

    def __init__(self, length: int) -> None:
        super().__init__(
            f"the range selects none of the {length} bytes", headers={"Content-Range": f"bytes */{length}"}
        )
        self.length = length


class MissingPolicyError(RuntimeError):
    """Some routes have no entry in the access table (STYLE.md 14)."""

    def __init__(self, missing: set[tuple[str, str]]) -> None:
        super().__init__(f"routes without an access policy: {sorted(missing)}")
        self.missing = frozenset(missing)
