"""The encrypted content store (DESIGN.md "Content stream v1", flow 5.3).

Each blob is `content/<32 hex>.cfs`: content stream v1 under K = DEK with a fresh salt per item (or, for
a deferred item, the center's stream under Ke as received). A blob is written to `<id>.tmp`, fsynced, renamed
into place and the directory fsynced *before* the commit that references it; blobs no commit references (a
crash between the two, a refused purchase) are deleted at the first unlock. Plaintext never reaches the disk:
the temp file only ever receives ciphertext.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from device_os.core import fsio
from device_os.core.aead import AeadName
from device_os.core.faults import NO_FAULTS, FaultHook
from protocol import stream
from protocol.errors import StreamError

BLOB_SUFFIX = ".cfs"
TEMP_SUFFIX = ".tmp"
#: The device refuses streams whose segments exceed 1 MiB (DESIGN.md).
MAX_SEGMENT_SIZE = stream.DEVICE_MAX_SEGMENT_SIZE
DEFAULT_SEGMENT_SIZE = 65536
_BLOB_ID = re.compile(r"\A[0-9a-f]{32}\Z")
_READ_CHUNK = 256 * 1024


class BlobWriter:
    """Writes one blob: `write()` plaintext (or raw ciphertext), then `finish()` -> blob id, or `abort()`."""

    def __init__(
        self,
        directory: Path,
        *,
        key: bytes | None,
        aead: AeadName,
        segment_size: int,
        faults: FaultHook,
    ) -> None:
        self.blob_id = os.urandom(16).hex()
        self._directory = directory
        self._tmp = directory / (self.blob_id + TEMP_SUFFIX)
        self._final = directory / (self.blob_id + BLOB_SUFFIX)
        self._faults = faults
        self._encryptor = None if key is None else stream.Encryptor(key, aead=aead, segment_size=segment_size)
        self._fd: int | None = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._hash = hashlib.sha256()
        self.length = 0

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of what was passed to `write()` so far."""
        return self._hash.hexdigest()

    def _out(self, data: bytes) -> None:
        if self._fd is None:
            raise ValueError("blob writer is closed")
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def write(self, data: bytes) -> None:
        self._hash.update(data)
        self.length += len(data)
        self._out(self._encryptor.update(data) if self._encryptor is not None else data)

    def finish(self) -> str:
        """Finalize, fsync, rename into place, fsync the directory; returns the blob id."""
        if self._fd is None:
            raise ValueError("blob writer is closed")
        try:
            if self._encryptor is not None:
                self._out(self._encryptor.finalize())
            self._faults("content-after-write")
            os.fsync(self._fd)
            self._faults("content-after-fsync")
        except BaseException:
            self.abort()
            raise
        os.close(self._fd)
        self._fd = None
        os.replace(self._tmp, self._final)
        fsio.fsync_dir(self._directory)
        self._faults("content-after-rename")
        return self.blob_id

    def abort(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        fsio.remove_file(self._tmp)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.abort()


class ContentStore:
    def __init__(self, directory: Path, faults: FaultHook = NO_FAULTS) -> None:
        self.directory = directory
        self._faults = faults

    def ensure(self) -> None:
        self.directory.mkdir(mode=0o700, exist_ok=True)

    def path(self, blob_id: str) -> Path:
        if not _BLOB_ID.match(blob_id):
            raise ValueError("not a blob id")
        return self.directory / (blob_id + BLOB_SUFFIX)

    def writer(self, key: bytes, aead: AeadName, segment_size: int = DEFAULT_SEGMENT_SIZE) -> BlobWriter:
        """A writer that encrypts plaintext under `key` (the DEK) with a fresh salt."""
        self.ensure()
        return BlobWriter(self.directory, key=key, aead=aead, segment_size=segment_size, faults=self._faults)

    def raw_writer(self) -> BlobWriter:
        """A writer that stores bytes as given (a deferred item: the center's stream, already ciphertext)."""
        self.ensure()
        return BlobWriter(
            self.directory,
            key=None,
            aead="aes-256-gcm",
            segment_size=DEFAULT_SEGMENT_SIZE,
            faults=self._faults,
        )

    def read(self, blob_id: str, key: bytes) -> Iterator[bytes]:
        """Plaintext chunks of a blob, each authenticated before it is yielded; StreamError on any fault."""
        decryptor = stream.Decryptor(key, max_segment_size=MAX_SEGMENT_SIZE)
        with self.path(blob_id).open("rb") as fh:
            while chunk := fh.read(_READ_CHUNK):
                out = decryptor.update(chunk)
                if out:
                    yield out
        tail = decryptor.finalize()
        if tail:
            yield tail

    def read_range(self, blob_id: str, key: bytes, start: int, length: int) -> Iterator[bytes]:
        """Plaintext bytes [start, start + length), each segment verified; ValueError outside the item."""
        with self.path(blob_id).open("rb") as fh:
            yield from stream.read_range(fh, key, start, length, max_segment_size=MAX_SEGMENT_SIZE)

    def raw_chunks(self, blob_id: str) -> Iterator[bytes]:
        with self.path(blob_id).open("rb") as fh:
            while chunk := fh.read(_READ_CHUNK):
                yield chunk

    def blob_ids(self) -> set[str]:
        if not self.directory.exists():
            return set()
        return {
            p.name[: -len(BLOB_SUFFIX)]
            for p in self.directory.iterdir()
            if p.name.endswith(BLOB_SUFFIX) and _BLOB_ID.match(p.name[: -len(BLOB_SUFFIX)])
        }

    def listing(self) -> list[str]:
        """Every file name in the content directory (for "no state change" checks)."""
        if not self.directory.exists():
            return []
        return sorted(p.name for p in self.directory.iterdir())

    def delete(self, blob_id: str) -> None:
        if fsio.remove_file(self.path(blob_id)):
            fsio.fsync_dir(self.directory)

    def collect(self, referenced: set[str]) -> list[str]:
        """Delete temp files and blobs no committed state references; returns the names deleted."""
        if not self.directory.exists():
            return []
        removed = []
        for p in sorted(self.directory.iterdir()):
            keep = p.name.endswith(BLOB_SUFFIX) and p.name[: -len(BLOB_SUFFIX)] in referenced
            if not keep:
                p.unlink()
                removed.append(p.name)
        if removed:
            fsio.fsync_dir(self.directory)
        return removed


__all__ = ["BlobWriter", "ContentStore", "StreamError"]
