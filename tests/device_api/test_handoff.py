"""The event loop -> worker thread hand-off of purchase bodies (device_os/api/handoff.py)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from device_os.api.handoff import Handoff, HandoffClosed

T = TypeVar("T")


def run(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(coro_fn())


def test_items_arrive_in_order_then_none() -> None:
    async def main() -> list[int | None]:
        pipe = Handoff[int](2)
        got: list[int | None] = []

        def worker() -> None:
            while True:
                item = pipe.get()
                got.append(item)
                if item is None:
                    return

        thread = threading.Thread(target=worker)
        thread.start()
        for i in range(100):
            await pipe.put(i)
        pipe.end()
        await asyncio.to_thread(thread.join)
        return got

    assert run(main) == [*range(100), None]


def test_put_waits_for_room_without_blocking_the_loop() -> None:
    async def main() -> None:
        pipe = Handoff[int](2)
        await pipe.put(1)
        await pipe.put(2)
        third = asyncio.create_task(pipe.put(3))
        ticks = 0
        for _ in range(5):  # the loop keeps running while put(3) waits
            await asyncio.sleep(0)
            ticks += 1
        assert not third.done()
        assert ticks == 5
        assert await asyncio.to_thread(pipe.get) == 1  # the worker takes one: room for the third
        await asyncio.wait_for(third, 5)
        assert [await asyncio.to_thread(pipe.get) for _ in range(2)] == [2, 3]

    run(main)


def test_fail_is_raised_after_the_queued_items() -> None:
    async def main() -> None:
        pipe = Handoff[int](4)
        await pipe.put(7)
        pipe.fail(ConnectionResetError("client went away"))
        pipe.fail(RuntimeError("only the first outcome counts"))
        assert await asyncio.to_thread(pipe.get) == 7
        with pytest.raises(ConnectionResetError):
            await asyncio.to_thread(pipe.get)

    run(main)


def test_close_wakes_a_waiting_put_with_handoff_closed() -> None:
    async def main() -> None:
        pipe = Handoff[int](1)
        await pipe.put(1)
        blocked = asyncio.create_task(pipe.put(2))
        await asyncio.sleep(0)
        assert not blocked.done()
        await asyncio.to_thread(pipe.close)  # the worker refused the stream
        with pytest.raises(HandoffClosed):
            await asyncio.wait_for(blocked, 5)
        with pytest.raises(HandoffClosed):
            await pipe.put(3)

    run(main)


def test_a_cancelled_put_leaves_the_pipe_usable() -> None:
    async def main() -> None:
        pipe = Handoff[int](1)
        await pipe.put(1)
        blocked = asyncio.create_task(pipe.put(2))
        await asyncio.sleep(0)
        blocked.cancel()
        with pytest.raises(asyncio.CancelledError):
            await blocked
        assert await asyncio.to_thread(pipe.get) == 1  # wakes a cancelled waiter: harmless
        await pipe.put(3)
        pipe.end()
        assert await asyncio.to_thread(pipe.get) == 3
        assert await asyncio.to_thread(pipe.get) is None

    run(main)


def test_depth_must_be_positive() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="depth"):
            Handoff[int](0)

    run(main)
