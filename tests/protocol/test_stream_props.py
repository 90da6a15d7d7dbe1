"""Property tests for content stream v1 (DESIGN.md "Wire formats" → "Content stream v1"): round trips with
lengths around segment boundaries and random chunking, random-access ranges, and tampering or truncation
anywhere never yielding a plaintext."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import errors, stream
from protocol.stream import HEADER_SIZE, TAG_SIZE

KEY = bytes(range(1, 33))
SALT = bytes(range(2, 34))
SEGMENT_SIZES = (1024, 1500, 4096)

PROFILE = settings(max_examples=150, deadline=None)


@st.composite
def plaintexts(draw: Any) -> tuple[int, bytes]:
    """(segment size, plaintext) with a length at or next to a multiple of s (0..4 segments)."""
    s = draw(st.sampled_from(SEGMENT_SIZES))
    length = max(0, draw(st.integers(0, 4)) * s + draw(st.integers(-2, 2)))
    seed = draw(st.integers(0, 2**32 - 1))
    return s, random.Random(seed).randbytes(length)


def cut(data: bytes, sizes: list[int], kinds: list[str]) -> Iterator[bytes | bytearray | memoryview]:
    """`data` in chunks whose sizes cycle through `sizes` (0 allowed), as bytes, bytearray or memoryview."""
    pos, i = 0, 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        piece = data[pos : pos + size]
        kind = kinds[i % len(kinds)]
        yield piece if kind == "bytes" else bytearray(piece) if kind == "bytearray" else memoryview(piece)
        pos += size
        i += 1


chunk_sizes = st.lists(st.integers(0, 5000), min_size=1, max_size=8).filter(any)
chunk_kinds = st.lists(st.sampled_from(["bytes", "bytearray", "memoryview"]), min_size=1, max_size=4)
aeads = st.sampled_from(sorted(stream.AEADS))


@PROFILE
@given(plaintexts(), aeads, chunk_sizes, chunk_kinds, chunk_sizes, chunk_kinds)
def test_round_trip_with_random_chunking(
    case: tuple[int, bytes],
    aead: str,
    enc_sizes: list[int],
    enc_kinds: list[str],
    dec_sizes: list[int],
    dec_kinds: list[str],
) -> None:
    s, plaintext = case
    whole = stream.encrypt(plaintext, KEY, aead=aead, segment_size=s, salt=SALT)
    assert len(whole) == stream.ciphertext_length(len(plaintext), s)

    enc = stream.Encryptor(KEY, aead=aead, segment_size=s, salt=SALT)
    pushed = b"".join(enc.update(c) for c in cut(plaintext, enc_sizes, enc_kinds)) + enc.finalize()
    assert pushed == whole

    dec = stream.Decryptor(KEY)
    released, fed = 0, 0
    out = []
    for chunk in cut(whole, dec_sizes, dec_kinds):
        piece = dec.update(chunk)
        fed += len(chunk)
        released += len(piece)
        out.append(piece)
        # exactly the segments that more input follows, never the one that might be last
        assert released == s * max(0, (fed - HEADER_SIZE - 1) // (s + TAG_SIZE))
    out.append(dec.finalize())
    assert b"".join(out) == plaintext

    assert b"".join(stream.decrypt_iter(cut(whole, dec_sizes, ["bytes"]), KEY)) == plaintext


@PROFILE
@given(plaintexts(), aeads, st.data())
def test_read_range_matches_slicing(case: tuple[int, bytes], aead: str, data: Any) -> None:
    s, plaintext = case
    ct = io.BytesIO(stream.encrypt(plaintext, KEY, aead=aead, segment_size=s, salt=SALT))
    n = len(plaintext)
    start = data.draw(st.integers(0, n))
    length = data.draw(st.integers(0, n - start))
    assert b"".join(stream.read_range(ct, KEY, start, length)) == plaintext[start : start + length]
    if length:
        ct_start, _, first = stream.ciphertext_range(start, start + length, s)
        assert first == start // s
        assert (ct_start - HEADER_SIZE) % (s + TAG_SIZE) == 0


@PROFILE
@given(plaintexts(), aeads, st.data())
def test_a_flipped_bit_anywhere_is_rejected(case: tuple[int, bytes], aead: str, data: Any) -> None:
    s, plaintext = case
    ct = bytearray(stream.encrypt(plaintext, KEY, aead=aead, segment_size=s, salt=SALT))
    pos = data.draw(st.integers(0, len(ct) - 1))
    ct[pos] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(errors.StreamError) as info:
        stream.decrypt(bytes(ct), KEY)
    if pos >= HEADER_SIZE:
        assert isinstance(info.value, errors.AuthenticationFailed)
        assert info.value.segment == (pos - HEADER_SIZE) // (s + TAG_SIZE)
    elif isinstance(info.value, errors.AuthenticationFailed):
        assert info.value.segment == 0
    else:
        assert isinstance(info.value, errors.BadHeader)


@PROFILE
@given(plaintexts(), aeads, st.data())
def test_every_strict_prefix_is_rejected(case: tuple[int, bytes], aead: str, data: Any) -> None:
    s, plaintext = case
    ct = stream.encrypt(plaintext, KEY, aead=aead, segment_size=s, salt=SALT)
    end = data.draw(st.integers(0, len(ct) - 1))
    with pytest.raises((errors.Truncated, errors.AuthenticationFailed)):
        stream.decrypt(ct[:end], KEY)
