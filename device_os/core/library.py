"""The library (DESIGN.md flow 5.6, procedure 2): reading owned items (whole or a range), a deferred item's
re-encryption at its first open, and deletion.
"""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import Generator, Iterator

from device_os.core.body import LibraryEntry
from device_os.core.content import MAX_SEGMENT_SIZE
from device_os.core.kernel import WalletKernel
from device_os.errors import (
    CorruptContent,
    Locked,
    NotFound,
    Tampered,
    Unavailable,
)
from protocol import stream
from protocol.errors import StreamError


class PlaintextStream(Iterator[bytes]):
    """An owned item's plaintext as `open_item` / `read_range` hand it out, decrypted segment by segment as it
    is read. The device's lock cuts it (issue 12 #9): the generator holding the DEK and the stream cipher is
    closed and dropped at the lock, not at the next read (which a client that stopped reading may never
    make); every later read raises Locked. When the lock comes while a read runs in another thread, that
    read stops at its next segment (the wallet's `alive` check) and the generator goes with it."""

    def __init__(self, chunks: Generator[bytes, None, None]) -> None:
        self._chunks: Generator[bytes, None, None] | None = chunks
        self._locked = False

    def __iter__(self) -> PlaintextStream:
        return self

    def __next__(self) -> bytes:
        chunks = self._chunks
        if chunks is None:
            if self._locked:
                raise Locked("the device is locked")
            raise StopIteration
        return next(chunks)

    def close(self) -> None:
        """The reader is done (e.g. the client went away): release the blob and the keys."""
        chunks, self._chunks = self._chunks, None
        if chunks is not None:
            chunks.close()

    def cut(self) -> None:
        """The device locked: let go of the DEK now."""
        self._locked = True
        chunks, self._chunks = self._chunks, None
        if chunks is not None:
            with contextlib.suppress(ValueError):  # running in the reader's thread: it stops by itself
                chunks.close()


class LibraryOps(WalletKernel):
    """Wallet operations on the library."""

    def entry(self, item_id: str) -> LibraryEntry:
        """The library entry of an owned item; NotFound otherwise."""
        entry = self._body.library.get(item_id)
        if entry is None:
            raise NotFound(f"item {item_id} is not in the library")
        return entry

    def _check_blob(self, entry: LibraryEntry) -> None:
        """The blob exists and its length is the library's (a lost or swapped file is corrupt content)."""
        try:
            length = self._session.content.plaintext_length(entry.blob)
        except (OSError, StreamError, ValueError) as exc:
            raise CorruptContent(f"stored content of {entry.item_id} is missing or unreadable") from exc
        if length != entry.length:
            raise CorruptContent(f"stored content of {entry.item_id} is not the library's length")

    def open_item(self, item_id: str) -> PlaintextStream:
        """The plaintext of an owned item; a deferred item is re-encrypted under the DEK first (at the first
        read: nothing runs before it)."""
        return self._cut_at_lock(self._plaintext(item_id))

    def read_range(self, item_id: str, start: int, length: int) -> PlaintextStream:
        """`length` plaintext bytes of an owned item from `start` (whole segments decrypted, then trimmed)."""
        return self._cut_at_lock(self._plaintext_range(item_id, start, length))

    def _cut_at_lock(self, chunks: Generator[bytes, None, None]) -> PlaintextStream:
        plaintext = PlaintextStream(chunks)
        self.cut_at_lock(plaintext)
        return plaintext

    def _plaintext(self, item_id: str) -> Generator[bytes, None, None]:
        entry = self.entry(item_id)
        if entry.mode == "deferred":
            entry = self._materialize(entry)
        self._check_blob(entry)
        try:
            yield from self._session.content.read(entry.blob, self._dek(), alive=self._check_open)
        except (StreamError, OSError) as exc:
            raise CorruptContent(f"stored content of {item_id}: {type(exc).__name__}") from exc

    def _plaintext_range(self, item_id: str, start: int, length: int) -> Generator[bytes, None, None]:
        entry = self.entry(item_id)
        if entry.mode == "deferred":
            entry = self._materialize(entry)
        self._check_blob(entry)
        try:
            yield from self._session.content.read_range(
                entry.blob, self._dek(), start, length, alive=self._check_open
            )
        except (StreamError, OSError, ValueError) as exc:
            raise CorruptContent(f"stored content of {item_id}: {type(exc).__name__}") from exc

    def _materialize(self, entry: LibraryEntry) -> LibraryEntry:
        """Procedure 2's first open: unwrap Ke again, re-encrypt under the DEK, swap blobs in one commit.

        The re-encryption runs outside the commit lock (a large item takes long; lock and auto-lock must not
        wait for it) and stops at the next chunk once the device locks; the commit then takes the lock
        briefly and checks again that the item is still this deferred one (a concurrent first open may
        have committed: its result is used and this blob deleted)."""
        with self.commit_lock:
            current = self.entry(entry.item_id)
            if current.mode == "now":
                return current
            if current.wrapped_key is None:  # pragma: no cover - schema keeps them together
                raise CorruptContent("deferred item without a wrapped key")
            ke = self._unwrap_content_key(
                current.wrapped_key, current.order_id, refuse=CorruptContent, source="the stored"
            )
        content = self._session.content
        writer = content.writer(self._dek(), self._session.aead)
        try:
            decryptor = stream.Decryptor(ke, max_segment_size=MAX_SEGMENT_SIZE)
            for chunk in content.raw_chunks(current.blob):
                self._check_open()
                writer.write(decryptor.update(chunk))
            writer.write(decryptor.finalize())
        except (StreamError, FileNotFoundError) as exc:
            writer.abort()
            raise CorruptContent(f"stored content: {type(exc).__name__}") from exc
        except BaseException:
            writer.abort()
            raise
        if writer.length != current.length or not hmac.compare_digest(writer.sha256, current.sha256):
            writer.abort()
            raise CorruptContent("stored content does not match its hash")
        blob = writer.finish()
        try:
            with self.commit_lock:
                again = self.entry(entry.item_id)
                if again == current:
                    new = current.model_copy(
                        update={
                            "blob": blob,
                            "mode": "now",
                            "wrapped_key": None,
                            "center_aead": None,
                            "center_segment_size": None,
                        }
                    )
                    body = self._body
                    library = {**body.library, new.item_id: new}
                    self._commit(lambda _c: body.model_copy(update={"library": library}))
        except (Unavailable, Tampered):
            raise
        except BaseException:
            content.delete(blob)
            raise
        if again != current:  # committed meanwhile (another first open, a repurchase): use that
            content.delete(blob)
            return again if again.mode == "now" else self._materialize(again)
        content.delete(current.blob)
        return new

    def delete_item(self, item_id: str) -> None:
        """Remove an item from the library (one commit), then its blob."""
        with self.commit_lock:
            entry = self.entry(item_id)
            body = self._body
            library = {k: v for k, v in body.library.items() if k != item_id}
            self._commit(lambda _c: body.model_copy(update={"library": library}))
        self._session.content.delete(entry.blob)
