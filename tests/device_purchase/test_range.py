"""GET /v1/library/{item}/content with Range: exact bytes at and across segment boundaries, against the
original plaintext (RFC 9110 §14: single ranges; 416 when nothing is selected)."""

from __future__ import annotations

import os

import pytest

from device_os.api.streaming import RangeNotSatisfiable, parse_range
from device_os.core.content import DEFAULT_SEGMENT_SIZE
from tests.device_purchase.shop import Shop

S = DEFAULT_SEGMENT_SIZE  # the device re-encrypts under the DEK with 64 KiB segments


@pytest.mark.parametrize(
    ("header", "length", "span"),
    [
        ("bytes=0-9", 100, (0, 10)),
        ("bytes=10-", 100, (10, 100)),
        ("bytes=-10", 100, (90, 100)),
        ("bytes=-1000", 100, (0, 100)),
        ("bytes=90-1000", 100, (90, 100)),
        ("bytes=99-99", 100, (99, 100)),
        ("BYTES = 5 - 6", 100, (5, 7)),
        (None, 100, None),
        ("bytes=5-1", 100, None),  # b < a: invalid, ignored
        ("bytes=0-1,5-6", 100, None),  # several ranges: ignored (whole item)
        ("items=0-1", 100, None),
        ("bytes=-", 100, None),
        ("bytes=a-b", 100, None),
    ],
)
def test_parse_range(header: str | None, length: int, span: tuple[int, int] | None) -> None:
    assert parse_range(header, length) == span


UNSATISFIABLE = [
    ("bytes=100-", 100),
    ("bytes=100-200", 100),
    ("bytes=-0", 100),
    ("bytes=0-", 0),
    ("bytes=-5", 0),
]


@pytest.mark.parametrize(("header", "length"), UNSATISFIABLE)
def test_parse_range_unsatisfiable(header: str, length: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        parse_range(header, length)
    assert info.value.headers == {"Content-Range": f"bytes */{length}"}


@pytest.mark.swtpm
@pytest.mark.integration
@pytest.mark.parametrize("mode", ["now", "deferred"])
def test_ranges_return_exact_bytes(shop: Shop, mode: str) -> None:
    content = os.urandom(3 * S + 123)
    shop.buy("v", content, mode=mode)
    v = shop.content_path("v")
    if mode == "deferred":
        assert shop.get(v, Range="bytes=0-0").content == content[:1]  # first open
    spans = [
        (0, 1),
        (S - 1, S),  # the last byte of segment 0
        (S, S + 1),  # the first byte of segment 1
        (S - 1, S + 1),  # across a boundary
        (S - 10, 2 * S + 10),  # across two boundaries
        (0, S),
        (S, 2 * S),
        (3 * S, 3 * S + 123),  # the short last segment
        (3 * S - 1, 3 * S + 123),
        (len(content) - 1, len(content)),
        (0, len(content)),
    ]
    for start, end in spans:
        r = shop.get(v, Range=f"bytes={start}-{end - 1}")
        assert r.status_code == 206, (start, end)
        assert r.headers["content-range"] == f"bytes {start}-{end - 1}/{len(content)}"
        assert r.headers["content-length"] == str(end - start)
        assert r.content == content[start:end], (start, end)
    r = shop.get(v, Range=f"bytes={2 * S}-")
    assert (r.status_code, r.content) == (206, content[2 * S :])
    r = shop.get(v, Range="bytes=-70000")
    assert (r.status_code, r.content) == (206, content[-70000:])
    r = shop.get(v)
    assert (r.status_code, r.headers["accept-ranges"], r.content) == (200, "bytes", content)
    before = shop.snapshot()
    r = shop.get(v, Range=f"bytes={len(content)}-")
    assert r.status_code == 416
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "urn:coffer:problem:range-not-satisfiable"
    assert r.headers["content-range"] == f"bytes */{len(content)}"
    assert shop.get("/v1/library/nope/content").status_code == 404
    assert shop.snapshot() == before
