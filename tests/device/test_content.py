"""The content store: stream v1 under the DEK, fresh salt per item, temp + fsync + rename, orphans."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from device_os.core.content import ContentStore
from protocol.errors import StreamError

DEK = os.urandom(32)
MARKER = b"PLAINTEXT-MARKER-0123456789"


@pytest.mark.parametrize("aead", ["aes-256-gcm", "chacha20-poly1305"])
def test_write_read_and_no_plaintext(tmp_path: Path, aead: str) -> None:
    store = ContentStore(tmp_path / "content")
    data = (MARKER * 5000)[:123457]
    with store.writer(DEK, aead, segment_size=4096) as w:  # type: ignore[arg-type]
        for i in range(0, len(data), 1000):
            w.write(data[i : i + 1000])
        blob = w.finish()
    assert w.length == len(data)
    assert b"".join(store.read(blob, DEK)) == data
    assert b"".join(store.read_range(blob, DEK, 5000, 10000)) == data[5000:15000]
    raw = store.path(blob).read_bytes()
    assert MARKER not in raw
    assert raw[:4] == b"CFS1"
    assert raw[5] == (1 if aead == "aes-256-gcm" else 2)
    assert os.stat(store.path(blob)).st_mode & 0o077 == 0
    # a second item with the same plaintext has a fresh salt
    with store.writer(DEK, aead) as w2:  # type: ignore[arg-type]
        w2.write(data)
        blob2 = w2.finish()
    assert store.path(blob2).read_bytes()[10:42] != raw[10:42]
    with pytest.raises(StreamError):
        b"".join(store.read(blob, os.urandom(32)))


def test_abort_and_collect(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "content")
    w = store.writer(DEK, "aes-256-gcm")
    w.write(b"partial")
    w.abort()
    assert store.listing() == []
    with store.writer(DEK, "aes-256-gcm") as keep:
        keep.write(b"keep")
        kept = keep.finish()
    with store.writer(DEK, "aes-256-gcm") as orphan:
        orphan.write(b"orphan")
        orphan.finish()
    leftover = store.writer(DEK, "aes-256-gcm")
    leftover.write(b"x" * 100)  # a temp file a crash left behind
    removed = store.collect({kept})
    assert len(removed) == 2
    assert store.blob_ids() == {kept}
    assert store.listing() == [kept + ".cfs"]
    with pytest.raises(ValueError, match="blob id"):
        store.path("../state")


def test_exception_in_with_aborts(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "content")

    def fail() -> None:
        with store.writer(DEK, "aes-256-gcm") as w:
            w.write(b"abc")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fail()
    assert store.listing() == []


def test_finish_in_background(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "content")
    w = store.writer(DEK, "aes-256-gcm")
    w.write(MARKER * 100)
    pending = w.finish_in_background()
    assert pending.wait() == pending.blob_id == w.blob_id
    assert store.listing() == [pending.blob_id + ".cfs"]
    assert b"".join(store.read(pending.blob_id, DEK)) == MARKER * 100


def test_finish_in_background_failure_removes_the_temp_file(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "content")
    w = store.writer(DEK, "aes-256-gcm")
    w.write(MARKER)
    w.abort()  # a writer that can no longer finish: the background finish raises
    pending = w.finish_in_background()
    with pytest.raises(ValueError, match="closed"):
        pending.wait()
    pending.settle()  # settling an ended failure does not raise
    assert store.listing() == []
