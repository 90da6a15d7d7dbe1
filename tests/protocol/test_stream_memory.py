"""Content stream v1 runs in constant memory (DESIGN.md "Content stream v1"; issue 2): 256 MiB through
encrypt_file → decrypt_file raises the tracemalloc peak by less than 4 × the segment size (measured: ~2.1 ×).

The plaintext comes from a generator (one preallocated 64 KiB block, repeated with a changing prefix), the
ciphertext goes to a temporary file, and the plaintext coming back is hashed as it is written.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from protocol import stream

MIB = 1024 * 1024
TOTAL = 256 * MIB
BLOCK = 64 * 1024


class GeneratorReader(io.RawIOBase):
    """A readable raw file over an iterator of byte chunks (never joined)."""

    def __init__(self, chunks: Iterator[memoryview]) -> None:
        self._chunks = chunks
        self._current = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._current:
            nxt = next(self._chunks, None)
            if nxt is None:
                return 0
            self._current = nxt
        n = min(len(b), len(self._current))
        b[:n] = self._current[:n]
        self._current = self._current[n:]
        return n


class HashingSink(io.RawIOBase):
    def __init__(self) -> None:
        self.sha = hashlib.sha256()
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.sha.update(b)
        self.count += len(b)
        return len(b)


def plaintext_chunks(block: bytearray, total: int) -> Iterator[memoryview]:
    """`total` bytes: the block over and over, its first 8 bytes the block's number (so blocks differ)."""
    view = memoryview(block)
    for i in range(total // len(block)):
        view[:8] = i.to_bytes(8, "big")
        yield view


@pytest.mark.parametrize(("segment_size", "aead"), [(64 * 1024, "aes-256-gcm"), (MIB, "chacha20-poly1305")])
def test_256_mib_through_files_in_constant_memory(segment_size: int, aead: str) -> None:
    key = os.urandom(32)
    block = bytearray(os.urandom(BLOCK))
    expected = hashlib.sha256()
    for chunk in plaintext_chunks(block, TOTAL):
        expected.update(chunk)
    source = GeneratorReader(plaintext_chunks(block, TOTAL))
    sink = HashingSink()
    with tempfile.TemporaryFile() as ciphertext:
        tracemalloc.start()
        try:
            baseline = tracemalloc.get_traced_memory()[0]
            written = stream.encrypt_file(source, ciphertext, key, aead=aead, segment_size=segment_size)
            ciphertext.seek(0)
            plain = stream.decrypt_file(
                ciphertext, sink, key, max_segment_size=stream.DEVICE_MAX_SEGMENT_SIZE
            )
            peak = tracemalloc.get_traced_memory()[1] - baseline
        finally:
            tracemalloc.stop()
    assert written == stream.ciphertext_length(TOTAL, segment_size)
    assert plain == sink.count == TOTAL
    assert sink.sha.digest() == expected.digest()
    assert peak < 4 * segment_size, f"peak {peak} bytes >= 4 x {segment_size}"


def test_iterators_chained_stay_bounded() -> None:
    """encrypt_iter → decrypt_iter with misaligned chunks: two pipelines and a segment in flight between them
    (each side holds at most one segment plus the chunk in hand), so a looser bound than for the files."""
    segment_size = 64 * 1024
    key = os.urandom(32)
    block = os.urandom(10_000)
    count = 64 * MIB // len(block)
    expected = hashlib.sha256()
    for _ in range(count):
        expected.update(block)
    got = hashlib.sha256()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        chunks = (block for _ in range(count))
        for piece in stream.decrypt_iter(stream.encrypt_iter(chunks, key, segment_size=segment_size), key):
            got.update(piece)
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    assert got.digest() == expected.digest()
    assert peak < 8 * segment_size, f"peak {peak} bytes >= 8 x {segment_size}"
