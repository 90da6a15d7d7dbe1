"""Blob storage for content and previews (DESIGN.md "Scale"): an interface and the local folder.

Blobs are content-addressed by lowercase hex SHA-256, so writing the same bytes twice is harmless and a failed
registration can delete what it wrote (`delete`) without touching other items' blobs unless they share bytes:
callers delete only blobs that no committed row references. An S3-compatible store comes later.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from center.errors import NotFoundError, StorageError

_KEY = re.compile(r"\A[0-9a-f]{64}\Z")
CHUNK = 1 << 20


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    length: int
    created: bool  # False when identical bytes were already stored


class BlobStore(Protocol):
    def put_file(self, path: Path) -> StoredBlob: ...

    def put_bytes(self, data: bytes) -> StoredBlob: ...

    def exists(self, sha256: str) -> bool: ...

    def size(self, sha256: str) -> int: ...

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> bytes:
        """Bytes [start, end) of a blob (end=None: to the end)."""
        ...

    def iter_chunks(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]: ...

    def delete(self, sha256: str) -> None: ...


class LocalBlobStore:
    """Blobs in `root/ab/cdef…`, written atomically (temp file, fsync, rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, sha256: str) -> Path:
        if not _KEY.match(sha256):
            raise NotFoundError(f"no blob {sha256!r}")
        return self.root / sha256[:2] / sha256[2:]

    def _store(self, chunks: Iterator[bytes]) -> StoredBlob:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".incoming-{secrets.token_hex(8)}"
        digest, length = hashlib.sha256(), 0
        try:
            with open(tmp, "wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    length += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            sha = digest.hexdigest()
            final = self._path(sha)
            if final.exists():
                tmp.unlink()
                return StoredBlob(sha, length, created=False)
            final.parent.mkdir(exist_ok=True)
            os.replace(tmp, final)
            dir_fd = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
            return StoredBlob(sha, length, created=True)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StorageError(f"cannot store a blob: {exc.strerror}") from exc

    def put_file(self, path: Path) -> StoredBlob:
        def chunks() -> Iterator[bytes]:
            with open(path, "rb") as fh:
                while chunk := fh.read(CHUNK):
                    yield chunk

        return self._store(chunks())

    def put_bytes(self, data: bytes) -> StoredBlob:
        return self._store(iter([data]))

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).is_file()

    def size(self, sha256: str) -> int:
        try:
            return self._path(sha256).stat().st_size
        except FileNotFoundError as exc:
            raise NotFoundError(f"no blob {sha256}") from exc

    def _open(self, sha256: str) -> BinaryIO:
        try:
            return open(self._path(sha256), "rb")
        except FileNotFoundError as exc:
            raise NotFoundError(f"no blob {sha256}") from exc
        except OSError as exc:
            raise StorageError(f"cannot read blob {sha256}: {exc.strerror}") from exc

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> bytes:
        with self._open(sha256) as fh:
            fh.seek(start)
            return fh.read() if end is None else fh.read(max(0, end - start))

    def iter_chunks(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        with self._open(sha256) as fh:
            fh.seek(start)
            left = None if end is None else end - start
            while left is None or left > 0:
                chunk = fh.read(CHUNK if left is None else min(CHUNK, left))
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk

    def delete(self, sha256: str) -> None:
        self._path(sha256).unlink(missing_ok=True)
