"""The encrypted content store (DESIGN.md "Content stream v1", flow 5.3).

Each blob is `content/<32 hex>.cfs`: content stream v1 under K = DEK with a fresh salt per item (or, for
a deferred item, the center's stream under Ke as received). A blob is written to `<id>.tmp`, fsynced, renamed
into place and the directory fsynced *before* the commit that references it becomes durable (the TPM
NV_Increment); blobs no commit references (a crash between the two, a refused purchase) are deleted at the
first unlock. Plaintext never reaches the disk: the temp file only ever receives ciphertext.

While a blob is written its writeback is started every `EARLY_WRITEBACK` bytes (a hint to the kernel, not
a durability step): the disk works while the content streams in, and the fsync at the end has little left.
A purchase makes its blob durable in the background (`BlobWriter.finish_in_background()` -> `PendingBlob`)
while the commit is prepared (payment signed in the TPM, state written and fsynced) and waits for it just
before the NV_Increment: the flush of a large item and the TPM's work overlap instead of adding up.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType

from device_os.core import fsio
from device_os.core.aead import AeadName
from device_os.core.faults import NO_FAULTS, FaultHook
from device_os.errors import ContentMismatch
from protocol import stream
from protocol.errors import StreamError

BLOB_SUFFIX = ".cfs"
TEMP_SUFFIX = ".tmp"
#: The device refuses streams whose segments exceed 1 MiB (DESIGN.md).
MAX_SEGMENT_SIZE = stream.DEVICE_MAX_SEGMENT_SIZE
DEFAULT_SEGMENT_SIZE = 65536
_BLOB_ID = re.compile(r"\A[0-9a-f]{32}\Z")
_READ_CHUNK = 256 * 1024
#: Plaintext gathered by `import_stream` before one hash update + encrypt pass + write(2).
IMPORT_BATCH = 1024 * 1024
#: A blob's writeback to the disk is started every this many bytes written (`fsio.start_writeback`), so the
#: final fsync waits for the last few MiB instead of the whole item.
EARLY_WRITEBACK = 8 * 1024 * 1024


def _always() -> None:
    """The `alive` check of a reader nobody can lock."""


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
        self._segment_size = segment_size
        self._buf = memoryview(bytearray(0))  # the ciphertext of one write(), reused
        with fsio.full_disk_refused():
            self._fd: int | None = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._hash = None if key is None else hashlib.sha256()
        self.length = 0
        self._written = 0  # bytes in the file
        self._written_back = 0  # bytes whose writeback was started

    @property
    def raw(self) -> bool:
        """True for a writer that stores bytes as given (no encryption, no hash)."""
        return self._encryptor is None

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of what was passed to `write()` so far (an encrypting writer only: what it hashes is
        plaintext; a raw writer's input is ciphertext, whose hash nobody needs)."""
        if self._hash is None:
            raise ValueError("a raw blob writer does not hash")
        return self._hash.hexdigest()

    def _out(self, data: bytes | memoryview) -> None:
        if self._fd is None:
            raise ValueError("blob writer is closed")
        view = memoryview(data)
        with fsio.full_disk_refused():
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
                self._written += n
        if self._written - self._written_back >= EARLY_WRITEBACK:
            fsio.start_writeback(self._fd, self._written_back, self._written - self._written_back)
            self._written_back = self._written

    def write(self, data: bytes | memoryview) -> None:
        """Hash `data`, encrypt it into a reused buffer, write that in one write(2); raw: write `data`."""
        self.length += len(data)
        if self._encryptor is None or self._hash is None:
            self._out(data)
            return
        self._hash.update(data)
        n, s = len(data), self._segment_size
        need = stream.HEADER_SIZE + n + s + stream.TAG_SIZE * (n // s + 1)
        if len(self._buf) < need:
            self._buf = memoryview(bytearray(need))
        self._out(self._buf[: self._encryptor.update_into(data, self._buf)])

    def finish(self) -> str:
        """Finalize, fsync, rename into place, fsync the directory; returns the blob id."""
        if self._fd is None:
            raise ValueError("blob writer is closed")
        try:
            if self._encryptor is not None:
                self._out(self._encryptor.finalize())
            self._faults("content-after-write")
            with fsio.full_disk_refused():
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

    def finish_in_background(self) -> PendingBlob:
        """`finish()` in a thread of its own; `PendingBlob.wait()` returns the blob id once durable."""
        return PendingBlob(self)

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


class PendingBlob:
    """A blob being made durable (`BlobWriter.finish()`: fsync, rename, directory fsync) in a background
    thread. `wait()` returns the blob id or raises what `finish()` raised (which has then removed the temp
    file); `settle()` waits and swallows the outcome, for error paths that delete the blob afterwards (so a
    late rename can never bring a deleted blob back)."""

    def __init__(self, writer: BlobWriter) -> None:
        self.blob_id = writer.blob_id
        self._writer = writer
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="blob-sync", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._writer.finish()
        except BaseException as exc:  # handed to wait(): the caller decides
            self._error = exc

    def wait(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.blob_id

    def settle(self) -> None:
        self._thread.join()


class StreamImport:
    """Flow 5.3's content work, pushed chunk by chunk: decrypt the center's stream under Ke, SHA-256 the
    plaintext once and hand it to `writer` (which re-encrypts it under the DEK), or, for a raw writer, store
    the stream as received.

    `feed()` raises StreamError on any fault of the stream and ContentMismatch as soon as the plaintext
    exceeds `max_length`; `finish()` checks the stream's end and returns (hex SHA-256, length) of the
    plaintext. Segments are decrypted in place into one reused buffer and handed on in batches of about
    `IMPORT_BATCH` bytes (one hash update, one encrypt pass, one write(2) each), so one `feed()` of a chunk of
    n bytes does O(n + IMPORT_BATCH) work. The caller finishes or aborts `writer`.
    """

    def __init__(self, ke: bytes, writer: BlobWriter, *, max_length: int) -> None:
        self._decryptor = stream.Decryptor(ke, max_segment_size=MAX_SEGMENT_SIZE)
        self._writer = writer
        self._raw = writer.raw
        self._digest = hashlib.sha256()
        self._max_length = max_length
        self._buf = memoryview(bytearray(IMPORT_BATCH + 2 * MAX_SEGMENT_SIZE))
        self._fill = 0
        self.length = 0  # plaintext handed on so far

    def _flush(self) -> None:
        if self._fill:
            plain = self._buf[: self._fill]
            if self._raw:
                self._digest.update(plain)
            else:
                self._writer.write(plain)
            self.length += self._fill
            self._fill = 0

    def feed(self, chunk: bytes | memoryview) -> None:
        if self._raw:
            self._writer.write(chunk)
        header = self._decryptor.header
        room = len(chunk) + (MAX_SEGMENT_SIZE if header is None else header.segment_size)
        if len(self._buf) - self._fill < room:
            self._flush()
            if len(self._buf) < room:
                self._buf = memoryview(bytearray(room))
        self._fill += self._decryptor.update_into(chunk, self._buf[self._fill :])
        if self.length + self._fill > self._max_length:
            raise ContentMismatch("content is longer than the order says")
        if self._fill >= IMPORT_BATCH:
            self._flush()

    def finish(self) -> tuple[str, int]:
        self._flush()
        tail = self._decryptor.finalize()
        self.length += len(tail)
        if self._raw:
            self._digest.update(tail)
            return self._digest.hexdigest(), self.length
        self._writer.write(tail)
        return self._writer.sha256, self.length


def import_stream(
    chunks: Iterable[bytes | memoryview], ke: bytes, writer: BlobWriter, *, max_length: int
) -> tuple[str, int]:
    """`StreamImport` over an iterable; returns (hex SHA-256, length) of the plaintext."""
    work = StreamImport(ke, writer, max_length=max_length)
    for chunk in chunks:
        work.feed(chunk)
    return work.finish()


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

    def read(self, blob_id: str, key: bytes, *, alive: Callable[[], object] = _always) -> Iterator[bytes]:
        """Plaintext of a blob, one segment at a time, each authenticated before it is yielded; StreamError
        on any fault. `alive()` runs before every segment is decrypted and stops the stream by raising (the
        device locked: no plaintext after lock, whatever the reader holds)."""
        decryptor = stream.Decryptor(key, max_segment_size=MAX_SEGMENT_SIZE)
        with self.path(blob_id).open("rb") as fh:
            size = stream.HEADER_SIZE
            while chunk := fh.read(size):
                alive()
                out = decryptor.update(chunk)
                if decryptor.header is not None:
                    size = decryptor.header.segment_size + stream.TAG_SIZE
                if out:
                    yield out
        alive()
        tail = decryptor.finalize()
        if tail:
            yield tail

    def plaintext_length(self, blob_id: str) -> int:
        """The plaintext length the blob's header and size imply (OSError, StreamError, ValueError)."""
        with self.path(blob_id).open("rb") as fh:
            header = stream.Header.parse(fh.read(stream.HEADER_SIZE), max_segment_size=MAX_SEGMENT_SIZE)
            return stream.plaintext_length(os.fstat(fh.fileno()).st_size, header.segment_size)

    def read_range(
        self, blob_id: str, key: bytes, start: int, length: int, *, alive: Callable[[], object] = _always
    ) -> Iterator[bytes]:
        """Plaintext bytes [start, start + length), each segment verified; ValueError outside the item.
        `alive()` runs before every segment is decrypted, as in `read`."""
        with self.path(blob_id).open("rb") as fh:
            segments = stream.read_range(fh, key, start, length, max_segment_size=MAX_SEGMENT_SIZE)
            while True:
                alive()
                segment = next(segments, None)
                if segment is None:
                    return
                yield segment

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


__all__ = [
    "IMPORT_BATCH",
    "BlobWriter",
    "ContentStore",
    "PendingBlob",
    "StreamError",
    "StreamImport",
    "import_stream",
]
