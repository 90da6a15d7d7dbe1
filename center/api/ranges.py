"""HTTP Range (RFC 9110 §14) for previews: one `bytes=` range, or the whole body.

Chromium's media element fetches audio and video with Range requests and needs 206 answers to seek.
"""

from __future__ import annotations

import re

from center.errors import RangeNotSatisfiableError

_RANGE = re.compile(r"\Abytes=(\d*)-(\d*)\Z")


def parse_range(header: str | None, length: int) -> tuple[int, int] | None:
    """(start, end exclusive) of a satisfiable single range; None to send everything.

    Several ranges or a malformed header are ignored (RFC 9110 allows serving the whole representation);
    a range entirely past the end raises RangeNotSatisfiableError (416).
    """
    if header is None:
        return None
    m = _RANGE.match(header.strip())
    if m is None:
        return None
    first, last = m.group(1), m.group(2)
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        n = int(last)
        if n == 0:
            raise RangeNotSatisfiableError(length)
        return max(0, length - n), length
    start = int(first)
    end = length if not last else min(int(last) + 1, length)
    if last and int(last) < start:
        return None
    if start >= length:
        raise RangeNotSatisfiableError(length)
    return start, end
