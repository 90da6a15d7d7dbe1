"""A bounded hand-off from the event loop to one worker thread that never makes the worker wait for the loop.

    pipe = Handoff[list[bytes]](depth=4)          # created in the event loop
    await pipe.put(batch)                         # loop side: waits (without blocking the loop) while full
    pipe.end() / pipe.fail(exc)                   # loop side: the last thing the worker sees
    item = pipe.get()                             # worker side: blocks on a condition; None after end()
    pipe.close()                                  # worker side: it takes nothing more; put() then raises

Why not an anyio memory stream read with `anyio.from_thread.run(receive.receive)`: every batch would then be a
round trip through the event loop, and the worker waits for the loop to get round to it (the loop is busy
receiving the next chunks). Measured on a 64 MiB import: 15–36 ms of such waits per purchase. Here the worker
takes a batch under a lock; only when the loop is waiting for room does the worker wake it, with
`call_soon_threadsafe` (which does not wait).

Asyncio only (the device service runs under uvicorn's asyncio loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class HandoffClosed(Exception):
    """`put()` after the worker closed its end (it refused the stream or finished)."""


class Handoff(Generic[T]):
    def __init__(self, depth: int) -> None:
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self._depth = depth
        self._items: deque[T] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._loop = asyncio.get_running_loop()
        self._room: asyncio.Future[None] | None = None
        self._ended = False  # the loop side will put nothing more
        self._error: BaseException | None = None
        self._closed = False  # the worker side takes nothing more

    # -- event loop side ---------------------------------------------------------------------------------

    async def put(self, item: T) -> None:
        """Append `item`; while `depth` items wait, wait for the worker to take one. HandoffClosed once
        the worker closed its end."""
        while True:
            with self._cond:
                if self._closed:
                    raise HandoffClosed("the worker takes no more items")
                if self._ended:
                    raise ValueError("put() after end()")
                if len(self._items) < self._depth:
                    self._items.append(item)
                    self._cond.notify()
                    return
                room = self._room = self._loop.create_future()
            await room

    def end(self) -> None:
        """No more items: the worker's `get()` returns None once it has taken the ones queued."""
        with self._cond:
            self._ended = True
            self._cond.notify()

    def fail(self, error: BaseException) -> None:
        """No more items: the worker's `get()` raises `error` once it has taken the ones queued."""
        with self._cond:
            if not self._ended:
                self._ended = True
                self._error = error
            self._cond.notify()

    # -- worker side ---------------------------------------------------------------------------------------

    def get(self) -> T | None:
        """The next item (blocking); None after `end()`; raises what `fail()` was given."""
        with self._cond:
            while not self._items and not self._ended:
                self._cond.wait()
            if not self._items:
                if self._error is not None:
                    raise self._error
                return None
            item = self._items.popleft()
            room, self._room = self._room, None
        if room is not None:
            _wake(self._loop, room)
        return item

    def close(self) -> None:
        """The worker takes nothing more: queued items are dropped and a waiting `put()` raises."""
        with self._cond:
            self._closed = True
            self._items.clear()
            room, self._room = self._room, None
        if room is not None:
            _wake(self._loop, room)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _wake(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed (server shutdown): nobody waits any more
        loop.call_soon_threadsafe(_resolve, future)


__all__ = ["Handoff", "HandoffClosed"]
