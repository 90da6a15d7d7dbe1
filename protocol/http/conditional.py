"""`If-None-Match` (RFC 9110 §13.1.2) for the center's cacheable answers: one rule, used by every route that
sends an ETag and answers 304.

    if none_match(request.headers.get("if-none-match"), etag):   # etag: a strong tag, '"…"'
        return 304

The condition is false (so: 304 for GET) when the header is `*` and a representation exists, or when one of
its entity-tags matches the current one by the weak comparison (§8.8.3.2: `W/"x"` matches `"x"`). Elements
are comma-separated; empty ones are skipped; anything that is not an entity-tag simply matches nothing.
"""

from __future__ import annotations

__all__ = ["none_match"]


def _opaque(tag: str) -> str | None:
    """The opaque-tag of an entity-tag (`"x"` or `W/"x"`), or None when `tag` is none."""
    if tag.startswith("W/"):
        tag = tag[2:]
    if len(tag) >= 2 and tag[0] == tag[-1] == '"' and '"' not in tag[1:-1]:
        return tag
    return None


def none_match(header: str | None, etag: str) -> bool:
    """True when `If-None-Match: header` matches the current representation's `etag` (answer 304)."""
    if header is None:
        return False
    current = _opaque(etag)
    for element in header.split(","):
        tag = element.strip(" \t")
        if tag == "*":
            return True
        if tag and current is not None and _opaque(tag) == current:
            return True
    return False
