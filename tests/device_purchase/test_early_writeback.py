"""A blob's writeback is started while it is written (`content.EARLY_WRITEBACK`, `fsio.start_writeback`): a
hint that changes no byte. Blobs across the hint's boundaries read back exactly, encrypted and raw; the hint
never fails a write (a refused or meaningless call is ignored). Durability at the commit is
tests/device_purchase/test_power_cuts.py's (the fsync, rename and directory fsync are unchanged)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from device_os.core import content, fsio
from device_os.core.content import EARLY_WRITEBACK, ContentStore

KEY = b"\x42" * 32


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    s = ContentStore(tmp_path / "content")
    s.ensure()
    return s


@pytest.mark.parametrize("size", [EARLY_WRITEBACK - 1, EARLY_WRITEBACK, 2 * EARLY_WRITEBACK + 12_345])
def test_an_encrypted_blob_across_writeback_boundaries_reads_back_exactly(
    store: ContentStore, size: int
) -> None:
    plaintext = os.urandom(size)
    writer = store.writer(KEY, "aes-256-gcm")
    for offset in range(0, size, 700_001):  # writes that straddle the boundaries
        writer.write(plaintext[offset : offset + 700_001])
    assert writer.sha256 == hashlib.sha256(plaintext).hexdigest()
    blob = writer.finish()
    assert b"".join(store.read(blob, KEY)) == plaintext
    assert store.listing() == [blob + content.BLOB_SUFFIX]


def test_a_raw_blob_across_writeback_boundaries_is_kept_as_given(store: ContentStore) -> None:
    data = os.urandom(EARLY_WRITEBACK + 3)
    writer = store.raw_writer()
    writer.write(data[:5])
    writer.write(data[5:])
    blob = writer.finish()
    assert store.path(blob).read_bytes() == data


def test_the_hint_never_fails(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"x" * 10)
    fsio.start_writeback(fd, 0, 10)
    fsio.start_writeback(fd, 5, 1 << 30)  # beyond the end
    os.close(fd)
    fsio.start_writeback(fd, 0, 10)  # a closed descriptor: EBADF, ignored
    r, w = os.pipe()
    try:
        fsio.start_writeback(w, 0, 10)  # a pipe: ESPIPE, ignored
    finally:
        os.close(r)
        os.close(w)
