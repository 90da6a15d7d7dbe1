"""`Encryptor.update_into` / `Decryptor.update_into` give byte-identical output to `update`, any chunking."""

from __future__ import annotations

import os
import random

import pytest

from protocol import stream
from protocol.errors import StreamError


@pytest.mark.parametrize("aead", ["aes-256-gcm", "chacha20-poly1305"])
@pytest.mark.parametrize("seed", range(6))
def test_update_into_matches_update(aead: str, seed: int) -> None:
    rnd = random.Random(seed)
    s = rnd.choice([1024, 4096])
    pt = os.urandom(rnd.choice([0, 1, s - 1, s, s + 1, 3 * s, rnd.randrange(5 * s)]))
    key, salt = os.urandom(32), os.urandom(32)
    expected = stream.encrypt(pt, key, aead=aead, segment_size=s, salt=salt)
    enc = stream.Encryptor(key, aead=aead, segment_size=s, salt=salt)
    out, i = bytearray(), 0
    while i < len(pt):
        k = rnd.randrange(1, 3 * s)
        chunk: bytes | memoryview = (
            pt[i : i + k] if rnd.random() < 0.5 else memoryview(bytearray(pt[i : i + k]))
        )
        i += k
        buf = bytearray(stream.HEADER_SIZE + len(chunk) + s + stream.TAG_SIZE * (len(chunk) // s + 1))
        out += buf[: enc.update_into(chunk, buf)]
    out += enc.finalize()
    assert bytes(out) == expected
    dec = stream.Decryptor(key)
    got, i = bytearray(), 0
    while i < len(expected):
        k = rnd.randrange(1, 3 * s)
        chunk = expected[i : i + k]
        i += k
        buf = bytearray(len(chunk) + stream.MAX_SEGMENT_SIZE)
        got += buf[: dec.update_into(chunk, buf)]
    got += dec.finalize()
    assert bytes(got) == pt


def test_update_into_checks_room_and_fails_closed() -> None:
    key = os.urandom(32)
    data = stream.encrypt(os.urandom(5000), key, segment_size=1024)
    with pytest.raises(ValueError, match="too small"):
        stream.Decryptor(key).update_into(data, bytearray(10))
    with pytest.raises(ValueError, match="too small"):
        stream.Encryptor(key, segment_size=1024).update_into(os.urandom(5000), bytearray(10))
    bad = bytearray(data)
    bad[100] ^= 1
    dec = stream.Decryptor(key)
    with pytest.raises(StreamError):
        dec.update_into(bytes(bad), bytearray(len(bad) + stream.MAX_SEGMENT_SIZE))
    with pytest.raises(ValueError, match="finalized or failed"):
        dec.update_into(b"x", bytearray(stream.MAX_SEGMENT_SIZE + 1))
