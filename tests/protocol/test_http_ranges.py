"""protocol.http.ranges: RFC 9110 §14 byte ranges as the center and the device both answer them, and the
mapping of a range of a content stream v1 onto the whole segments that produce it."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import center.api.routes.items
import device_os.api.streaming
from protocol import stream
from protocol.http import ranges
from protocol.http.errors import HttpProblem
from protocol.http.ranges import ByteRange, RangeNotSatisfiable, content_range, parse_range, stream_slice
from protocol.stream import HEADER_SIZE, TAG_SIZE


@pytest.mark.parametrize(
    ("header", "length", "span"),
    [
        ("bytes=0-9", 100, (0, 10)),
        ("bytes=10-", 100, (10, 100)),
        ("bytes=-10", 100, (90, 100)),
        ("bytes=-1000", 100, (0, 100)),  # a suffix longer than the body: all of it (§14.1.2)
        ("bytes=90-1000", 100, (90, 100)),  # last-pos clipped to the end
        ("bytes=99-99", 100, (99, 100)),
        ("bytes=0-0", 1, (0, 1)),
        ("bytes=-1", 1, (0, 1)),
        ("bytes=007-008", 100, (7, 9)),  # leading zeros are decimal, not octal
        # the unit is case-insensitive (§14.1); spaces and tabs around the tokens are tolerated
        ("BYTES=5-6", 100, (5, 7)),
        ("Bytes=5-6", 100, (5, 7)),
        ("BYTES = 5 - 6", 100, (5, 7)),
        ("\tbytes\t=\t-3\t", 100, (97, 100)),
        # empty list elements are skipped (§5.6.1): still one range
        ("bytes=0-1,", 100, (0, 2)),
        ("bytes=, ,0-1", 100, (0, 2)),
    ],
)
def test_one_range(header: str, length: int, span: tuple[int, int]) -> None:
    got = parse_range(header, length)
    assert got == span
    assert isinstance(got, ByteRange)
    assert got.length == span[1] - span[0]


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "bytes",
        "bytes=",
        "bytes=-",  # neither end
        "bytes=5-1",  # last-pos < first-pos: invalid (§14.1.1)
        "bytes=10-9",
        "bytes=a-b",
        "bytes=1-2-3",
        "bytes=+1-2",
        "bytes=0x10-",
        "bytes=1.5-2",
        "bytes=-5-",
        "items=0-1",  # another unit
        "bits=0-1",
        "byte=0-1",
        "bytes0-1",
        "bytes:0-1",
        "bytes=0-1,5-6",  # several ranges: the whole representation (no multipart/byteranges)
        "bytes=0-1, 1-2",  # several, even overlapping or adjacent
        "bytes=500-600,700-800",  # several, even if none is satisfiable
        "bytes=0-1;x",
        "bytes=\u0663-",  # ARABIC-INDIC DIGIT THREE: only ASCII digits are numbers
        "bytes=\u00a05-6",  # NO-BREAK SPACE is not HTTP whitespace (only SP and HTAB are)
        "bytes=5\x0b-6",
        "bytes=5\x0c-6",
        "bytes=5-6\x85",
        "bytes=5-6\n",
    ],
)
def test_ignored_headers_send_everything(header: str | None) -> None:
    assert parse_range(header, 100) is None


UNSATISFIABLE = [
    ("bytes=100-", 100),
    ("bytes=100-200", 100),
    ("bytes=100-100", 100),
    ("bytes=-0", 100),
    ("bytes=-000", 100),
    # an empty body: no 206 can describe zero bytes (`bytes 0--1/0` is not a Content-Range)
    ("bytes=0-", 0),
    ("bytes=0-0", 0),
    ("bytes=-5", 0),
    ("bytes=-1", 0),
    ("bytes=-0", 0),
]


@pytest.mark.parametrize(("header", "length"), UNSATISFIABLE)
def test_unsatisfiable_is_416_with_the_length(header: str, length: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        parse_range(header, length)
    problem = info.value
    assert isinstance(problem, HttpProblem)
    assert (problem.slug, problem.length) == ("range-not-satisfiable", length)
    assert problem.headers == {"Content-Range": f"bytes */{length}"}
    assert problem.detail


def test_empty_body_without_range_or_with_an_ignored_one() -> None:
    assert parse_range(None, 0) is None
    assert parse_range("bytes=0-1,2-3", 0) is None
    assert parse_range("bytes=5-1", 0) is None


HUGE = "9" * 5000  # more digits than int() converts by default (4300): must neither raise nor be slow


@pytest.mark.parametrize(
    ("header", "span"),
    [
        (f"bytes=0-{HUGE}", (0, 100)),  # clipped to the end
        (f"bytes=-{HUGE}", (0, 100)),  # the whole body
        (f"bytes=0-{'0' * 5000}5", (0, 6)),  # leading zeros do not make a number large
        (f"bytes={'0' * 5000}-", (0, 100)),
        (f"bytes=5-{2**64}", (5, 100)),
        (f"bytes=-{2**64}", (0, 100)),
    ],
)
def test_large_numerals_do_not_overflow(header: str, span: tuple[int, int]) -> None:
    assert parse_range(header, 100) == span


@pytest.mark.parametrize("header", [f"bytes={HUGE}-", f"bytes={HUGE}-{HUGE}", f"bytes={2**64}-"])
def test_large_first_pos_is_past_the_end(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 100)


def test_large_last_before_larger_first_is_invalid() -> None:
    assert parse_range(f"bytes=1{HUGE}-{HUGE}", 100) is None  # b < a, both beyond any length
    assert parse_range(f"bytes={2**64 + 1}-{2**64}", 100) is None


def test_negative_length_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="length"):
        parse_range("bytes=0-1", -1)


@given(
    length=st.integers(0, 10_000),
    first=st.integers(0, 12_000),
    last=st.one_of(st.none(), st.integers(0, 12_000)),
)
@settings(max_examples=400, deadline=None)
def test_int_ranges_match_the_rfc_model(length: int, first: int, last: int | None) -> None:
    """An independent reading of RFC 9110 §14.1.1–§14.1.2 for `first-last` and `first-`."""
    header = f"bytes={first}-" + ("" if last is None else str(last))
    if last is not None and last < first:
        assert parse_range(header, length) is None
    elif first >= length:
        with pytest.raises(RangeNotSatisfiable):
            parse_range(header, length)
    else:
        end = length if last is None else min(last + 1, length)
        assert parse_range(header, length) == (first, end)


@given(length=st.integers(0, 10_000), suffix=st.integers(0, 12_000))
@settings(max_examples=200, deadline=None)
def test_suffix_ranges_match_the_rfc_model(length: int, suffix: int) -> None:
    if suffix == 0 or length == 0:
        with pytest.raises(RangeNotSatisfiable):
            parse_range(f"bytes=-{suffix}", length)
    else:
        assert parse_range(f"bytes=-{suffix}", length) == (length - min(suffix, length), length)


def test_content_range() -> None:
    assert content_range((0, 10), 100) == "bytes 0-9/100"
    assert content_range(ByteRange(99, 100), 100) == "bytes 99-99/100"
    assert content_range((0, 1), 1) == "bytes 0-0/1"
    for bad in [(0, 0), (5, 5), (5, 4), (-1, 2), (0, 101)]:
        with pytest.raises(ValueError, match="no 206"):
            content_range(bad, 100)
    with pytest.raises(ValueError, match="no 206"):
        content_range((0, 0), 0)  # the center once answered `bytes 0--1/0` here


def test_both_programs_use_this_parser() -> None:
    """One rule, one place (STYLE.md 17): no program keeps its own copy."""
    for module in (center.api.routes.items, device_os.api.streaming):
        assert module.parse_range is ranges.parse_range
        assert module.content_range is ranges.content_range
    assert device_os.api.streaming.RangeNotSatisfiable is ranges.RangeNotSatisfiable


# --- a range of a content stream v1 -> the whole segments that produce it

KEY = bytes(range(32))
SALT = bytes(32)
S = stream.MIN_SEGMENT_SIZE


def _units(ciphertext: bytes, segment_size: int) -> list[bytes]:
    """The stream cut the way a producer makes it: the header, then each sealed segment."""
    block = segment_size + TAG_SIZE
    body = ciphertext[HEADER_SIZE:]
    return [ciphertext[:HEADER_SIZE]] + [body[i : i + block] for i in range(0, len(body), block)]


def _produce(units: list[bytes], cut: ranges.StreamSlice) -> tuple[bytes, list[int]]:
    """What a producer following `cut` sends, and which units (0 = header, i + 1 = segment i) it made."""
    made = ([0] if cut.header else []) + [i + 1 for i in range(cut.first, cut.stop)]
    production = b"".join(units[u] for u in made)
    return production[cut.skip : cut.skip + cut.length], made


def _check(ciphertext: bytes, plaintext_length: int, start: int, end: int) -> None:
    cut = stream_slice((start, end), S, plaintext_length)
    units = _units(ciphertext, S)
    sent, made = _produce(units, cut)
    assert sent == ciphertext[start:end], (start, end, cut)
    # minimal: the first unit made holds byte `start`, the last holds byte `end - 1`
    offsets = [0]
    for unit in units:
        offsets.append(offsets[-1] + len(unit))
    assert offsets[made[0]] <= start < offsets[made[0] + 1]
    assert offsets[made[-1]] <= end - 1 < offsets[made[-1] + 1]
    assert made == list(range(made[0], made[-1] + 1))
    assert cut.skip == start - offsets[made[0]]


@pytest.mark.parametrize("plaintext_length", [0, 1, S - 1, S, S + 1, 3 * S, 3 * S + 17])
def test_stream_slice_at_every_boundary(plaintext_length: int) -> None:
    ciphertext = stream.encrypt(os.urandom(plaintext_length), KEY, segment_size=S, salt=SALT)
    total = stream.ciphertext_length(plaintext_length, S)
    assert len(ciphertext) == total
    block = S + TAG_SIZE
    edges = {0, 1, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + 1, total - 1, total}
    for i in range(1, plaintext_length // S + 2):
        edges |= {HEADER_SIZE + i * block + d for d in (-TAG_SIZE - 1, -TAG_SIZE, -1, 0, 1)}
    points = sorted(e for e in edges if 0 <= e <= total)
    for start in points:
        for end in points:
            if start < end:
                _check(ciphertext, plaintext_length, start, end)


def test_stream_slice_of_parsed_ranges_resumes_byte_identically() -> None:
    """A download cut anywhere and resumed with `Range: bytes=N-` yields the same bytes (the center's
    order content: the same key and salt re-encrypt only the segments the range needs)."""
    plaintext = os.urandom(5 * S + 100)
    ciphertext = stream.encrypt(plaintext, KEY, segment_size=S, salt=SALT)
    total = len(ciphertext)
    units = _units(ciphertext, S)
    for cut_at in (1, HEADER_SIZE, HEADER_SIZE + S + TAG_SIZE, total - 1):
        span = parse_range(f"bytes={cut_at}-", total)
        assert span is not None
        resumed, _ = _produce(units, stream_slice(span, S, len(plaintext)))
        assert ciphertext[:cut_at] + resumed == ciphertext
    last = parse_range("bytes=-20", total)
    assert last is not None
    assert _produce(units, stream_slice(last, S, len(plaintext)))[0] == ciphertext[-20:]


def test_stream_slice_header_only() -> None:
    cut = stream_slice((3, 10), S, 5000)
    assert (cut.header, cut.first, cut.stop, cut.skip, cut.length) == (True, 0, 0, 3, 7)


def test_stream_slice_refuses_ranges_outside_the_stream() -> None:
    total = stream.ciphertext_length(10, S)
    for bad in [(0, total + 1), (-1, 5), (5, 5), (7, 3)]:
        with pytest.raises(ValueError, match="outside"):
            stream_slice(bad, S, 10)
    with pytest.raises(ValueError, match="segment size"):
        stream_slice((0, 1), 100, 10)
