"""`protocol.stream.encrypt_segments`: any run of segments, made alone, equals the same bytes of `encrypt`."""

from __future__ import annotations

import os

import pytest

from protocol import stream

S = 1024


def _blocks(plaintext: bytes, first: int, last: int) -> list[bytes]:
    if not plaintext:
        return [b""]
    return [plaintext[i * S : (i + 1) * S] for i in range(first, last + 1)]


@pytest.mark.parametrize("aead", ["aes-256-gcm", "chacha20-poly1305"])
@pytest.mark.parametrize("length", [0, 1, S - 1, S, S + 1, 3 * S, 3 * S + 7])
def test_every_run_of_segments_equals_encrypt(aead: str, length: int) -> None:
    key, salt = os.urandom(32), os.urandom(32)
    plaintext = os.urandom(length)
    reference = stream.encrypt(plaintext, key, aead=aead, segment_size=S, salt=salt)
    header = stream.Header(aead=aead, segment_size=S, salt=salt)
    block = S + stream.TAG_SIZE
    count = max(1, -(-length // S))
    for first in range(count):
        for last in range(first, count):
            got = b"".join(
                stream.encrypt_segments(key, header, length, first, _blocks(plaintext, first, last))
            )
            start = stream.HEADER_SIZE + first * block
            assert got == reference[start : start + len(got)]
            assert start + len(got) == min(len(reference), stream.HEADER_SIZE + (last + 1) * block)
    whole = header.build() + b"".join(
        stream.encrypt_segments(key, header, length, 0, _blocks(plaintext, 0, count - 1))
    )
    assert whole == reference
    assert stream.decrypt(whole, key) == plaintext


def test_wrong_blocks_and_indexes_are_refused() -> None:
    key = os.urandom(32)
    header = stream.Header(aead="aes-256-gcm", segment_size=S, salt=os.urandom(32))
    with pytest.raises(ValueError, match="needs 1024"):
        list(stream.encrypt_segments(key, header, 3 * S, 0, [b"x" * 10]))
    with pytest.raises(ValueError, match="needs 5"):
        list(stream.encrypt_segments(key, header, 2 * S + 5, 2, [b"x" * S]))
    with pytest.raises(ValueError, match="outside"):
        list(stream.encrypt_segments(key, header, 2 * S, 2, [b"x"]))
    with pytest.raises(ValueError, match="outside"):
        list(stream.encrypt_segments(key, header, 2 * S, 1, [b"x" * S, b"x"]))
    with pytest.raises(ValueError, match="32 bytes"):
        list(stream.encrypt_segments(b"short", header, 10, 0, [b"x" * 10]))
