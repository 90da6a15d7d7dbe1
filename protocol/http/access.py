"""Every endpoint's access policy in one table per program, and the check that none is missing (STYLE.md 14).

A table maps `(METHOD, path template)` to the program's own policy value; the mechanism is shared, the data
(routes and policies) stays in each program:

    POLICIES: PolicyTable[Policy] = {("GET", "/v1/health"): PUBLIC, ...}
    require_policies(route_keys(app), POLICIES)    # at app build: MissingPolicyError names what is missing

`protocol.http.asgi.route_keys(app)` lists what an app serves (HEAD is implied by GET; a mount or websocket
counts as method "*" and needs an entry too).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeAlias, TypeVar

from protocol.http.errors import MissingPolicyError

__all__ = ["MissingPolicyError", "PolicyTable", "RouteKey", "missing_policies", "require_policies"]

P = TypeVar("P")
RouteKey: TypeAlias = tuple[str, str]
PolicyTable: TypeAlias = Mapping[RouteKey, P]


def missing_policies(served: Iterable[RouteKey], table: Mapping[RouteKey, object]) -> set[RouteKey]:
    """The served routes that have no entry in `table`."""
    return set(served) - set(table)


def require_policies(served: Iterable[RouteKey], table: Mapping[RouteKey, object]) -> None:
    """Fail closed: MissingPolicyError if a served route has no policy."""
    missing = missing_policies(served, table)
    if missing:
        raise MissingPolicyError(missing)
