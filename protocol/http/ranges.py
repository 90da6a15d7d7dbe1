"""HTTP byte ranges (RFC 9110 §14) for the center and the device, and their mapping onto content stream v1.

    span = parse_range(request.headers.get("range"), length)   # None: send the whole representation (200)
    headers["Content-Range"] = content_range(span, length)     # 206

What is accepted (decisions recorded in docs/protocol.md "HTTP pieces"):
- one range of unit `bytes` (any case, §14.1): `a-b` (b clipped to the end), `a-`, `-n` (the last n bytes);
  spaces and tabs are tolerated around `=`, `-` and `,`, and empty list elements are skipped (§5.6.1);
- a header that is not exactly one valid byte range is ignored (§14.2 allows it): another unit, several
  ranges (no multipart/byteranges answers), `b < a`, a bare `-`, anything else malformed;
- a valid range that selects no byte raises `RangeNotSatisfiable` (416, `Content-Range: bytes */<length>`,
  §15.5.17): `a >= length`, `-0`, and any range of an empty representation. RFC 9110 §14.1.1 calls a non-zero
  suffix of an empty representation satisfiable, but no 206 can describe zero bytes (`bytes 0--1/0` is not
  a Content-Range): 416 tells the client the length is 0.
- numbers of any length are read without overflow (§14.1.1: "recipients MUST anticipate potentially large
  decimal numerals"): a value past every representation's length acts as "to the end" or "past the end".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

from protocol.http.errors import RangeNotSatisfiable
from protocol.stream import HEADER_SIZE, TAG_SIZE, ciphertext_length

__all__ = [
    "ByteRange",
    "RangeNotSatisfiable",
    "StreamSlice",
    "content_range",
    "parse_range",
    "stream_slice",
]

_OWS = " \t"
_SPEC = re.compile(r"([0-9]*)[ \t]*-[ \t]*([0-9]*)")


class ByteRange(NamedTuple):
    """Bytes [start, end) of a representation; compares equal to the tuple (start, end)."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


def _number(digits: str, cap: int) -> int:
    """min(digits, cap) without converting a numeral longer than `cap`'s (no huge ints, no ValueError)."""
    digits = digits.lstrip("0") or "0"
    return cap if len(digits) > len(str(cap)) else min(int(digits), cap)


def _less(a: str, b: str) -> bool:
    """Numeric a < b for ASCII numerals of any length."""
    a, b = a.lstrip("0"), b.lstrip("0")
    return (len(a), a) < (len(b), b)


def parse_range(header: str | None, length: int) -> ByteRange | None:
    """The satisfiable byte range `header` selects from `length` bytes; None to send the whole representation.

    Raises RangeNotSatisfiable (416) for a valid range that selects nothing (see the module docstring).
    """
    if length < 0:
        raise ValueError("length must be >= 0")
    if header is None:
        return None
    unit, equals, range_set = header.partition("=")
    if not equals or unit.strip(_OWS).lower() != "bytes":
        return None
    specs = [spec for spec in (part.strip(_OWS) for part in range_set.split(",")) if spec]
    if len(specs) != 1:
        return None  # no range, or several: ignored
    match = _SPEC.fullmatch(specs[0])
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if first:
        if last and _less(last, first):
            return None  # b < a: invalid, ignored
        start = _number(first, length)
        if start >= length:
            raise RangeNotSatisfiable(length)
        end = length if not last else _number(last, length - 1) + 1
        return ByteRange(start, end)
    if not last:
        return None  # "bytes=-": not a range
    suffix = _number(last, length)
    if suffix == 0 or length == 0:
        raise RangeNotSatisfiable(length)
    return ByteRange(max(0, length - suffix), length)


def content_range(span: tuple[int, int], length: int) -> str:
    """The `Content-Range` of a 206 answer carrying bytes [start, end) of `length` (RFC 9110 §14.4)."""
    start, end = span
    if not 0 <= start < end <= length:
        raise ValueError(f"no 206 can carry [{start}, {end}) of {length} bytes")
    return f"bytes {start}-{end - 1}/{length}"


@dataclass(frozen=True)
class StreamSlice:
    """What to produce for stream bytes [start, end) of a content stream v1 made on the fly (the center's
    per-delivery encryption): the 42-byte header if `header`, then segments `first` .. `stop - 1` (none
    when equal); of that production drop `skip` bytes, then send `length` bytes."""

    header: bool
    first: int
    stop: int
    skip: int
    length: int


def stream_slice(span: tuple[int, int], segment_size: int, plaintext_length: int) -> StreamSlice:
    """The whole segments (and the header) covering stream bytes [start, end) of the content stream v1 of a
    `plaintext_length`-byte plaintext: a resumed download re-encrypts only those, byte-identical when the key
    and salt are the same (DESIGN.md "Content stream v1"). `span` comes from `parse_range` over
    `ciphertext_length(plaintext_length, segment_size)` bytes; ValueError if it lies outside them."""
    start, end = span
    total = ciphertext_length(plaintext_length, segment_size)  # checks segment_size and the length
    if not 0 <= start < end <= total:
        raise ValueError(f"range [{start}, {end}) outside the stream's {total} bytes")
    block = segment_size + TAG_SIZE
    if start < HEADER_SIZE:
        header, first, origin = True, 0, 0
    else:
        header = False
        first = (start - HEADER_SIZE) // block
        origin = HEADER_SIZE + first * block
    stop = 0 if end <= HEADER_SIZE else (end - 1 - HEADER_SIZE) // block + 1
    return StreamSlice(header=header, first=first, stop=stop, skip=start - origin, length=end - start)
