"""A bounded read-ahead: the center download runs in its own thread while the device upload sends, so the two
streams overlap instead of taking turns (issue 13's throughput goal; docs/terminal.md "Purchase").

    with ReadAhead(chunks, depth=4, advance=progress) as body:   # `chunks`: any iterable of bytes
        device.purchase(order, body, length)                     # iterates `body` in this thread

Lock-step (read 1 MiB from the center, then write it to the device) leaves the center's socket idle while the
device link is written and the device idle while the center is read; with both on the same two cores, each
side waits for the other about half the time. Here a producer thread iterates `chunks` (TLS reads, Range
resumes: everything `chunks` does) and puts each chunk into a queue of `depth` chunks; the consumer takes
them.

`gathered(response.iter_raw())` is what the producer iterates: the download's pieces (one per socket read,
up to 16 KiB through TLS) joined into ~1 MiB chunks with one copy, the first handed on at 64 KiB so the device
starts on the stream's header (its checks, the TPM unwrap of Ke) while the rest of the first MiB arrives.
httpx's own `iter_raw(chunk_size)` copies each MiB two or three times (BytesIO, getvalue, slices) and hands
nothing on before a whole chunk is in.

Memory stays bounded: at most `depth` chunks wait, plus the one each side holds. What `chunks` raises is
raised by the consumer, in order, after the chunks before it. Leaving the `with` early (the upload failed,
Ctrl-C) stops the producer at its next chunk and closes `chunks` in the producer's thread (a generator's
`finally` blocks run there: the center response is closed); the thread is a daemon, so a producer blocked in
a read never keeps the program alive.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType

#: Chunks read ahead of the upload (each ~1 MiB: terminal_cli.center.CHUNK).
DEPTH = 4
#: Bytes `gathered` hands on as its first chunk.
FIRST = 64 * 1024
#: How often a producer waiting for room looks whether the consumer has left.
_POLL = 0.1


def gathered(pieces: Iterable[bytes], size: int, *, first: int = FIRST) -> Iterator[bytes]:
    """`pieces` joined into chunks of at least `size` bytes (the last may be shorter), the first one of at
    least `first` bytes; each piece is copied once, and a piece that is a whole chunk not at all."""
    batch: list[bytes] = []
    have, want = 0, min(first, size)
    for piece in pieces:
        batch.append(piece)
        have += len(piece)
        if have >= want:
            yield batch[0] if len(batch) == 1 else b"".join(batch)
            batch, have, want = [], 0, size
    if batch:
        yield b"".join(batch)


class _End:
    """The producer's last item: the source is exhausted."""


_END = _End()


class ReadAhead:
    def __init__(
        self, source: Iterable[bytes], *, depth: int = DEPTH, advance: Callable[[int], None] | None = None
    ) -> None:
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self._source = source
        self._advance = advance
        self._queue: queue.Queue[bytes | BaseException | _End] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="coffer-download", daemon=True)
        self._producing = False
        self._started = False

    # -- producer (its own thread) ---------------------------------------------------------------------------
    def _offer(self, item: bytes | BaseException | _End) -> bool:
        """Queue `item`, waiting for room; False once the consumer has left."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        chunks = iter(self._source)
        try:
            for chunk in chunks:
                if not self._offer(chunk):
                    return
            self._offer(_END)
        except BaseException as exc:  # handed to the consumer, which raises it in its own thread
            self._offer(exc)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()  # a generator's finally blocks (the center response's close) run here

    def start(self) -> ReadAhead:
        """Start the producer now, before the consumer wants its first chunk (otherwise the first iteration
        does): the purchase's center download goes out while its upload to the device is being opened."""
        if not self._producing:
            self._producing = True
            self._thread.start()
        return self

    # -- consumer --------------------------------------------------------------------------------------------
    def __enter__(self) -> ReadAhead:
        return self

    def __iter__(self) -> Iterator[bytes]:
        if self._started:
            raise RuntimeError("a ReadAhead is iterated once")
        self._started = True
        self.start()
        while True:
            item = self._queue.get()
            if isinstance(item, _End):
                self._thread.join()  # the source is exhausted: its state (bytes sent, resumes) is final
                return
            if isinstance(item, BaseException):
                raise item
            if self._advance is not None:
                self._advance(len(item))
            yield item

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        """Stop the producer (if it still runs): it drops what it holds and closes the source."""
        self._stop.set()
        while True:  # free the room a producer may be waiting for
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break


__all__ = ["DEPTH", "FIRST", "ReadAhead", "gathered"]
