"""terminal_cli.readahead: the center download read ahead of the device upload in its own thread — order kept,
memory bounded, errors raised in the consumer after the chunks before them, the source closed when the
consumer leaves early. Pure (threads, no network): the purchase tests drive it over real sockets."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from terminal_cli.errors import CenterUnreachable
from terminal_cli.readahead import ReadAhead, gathered

WAIT = 10.0  # a hang guard, never a timing assertion


class Source:
    """A generator-backed source that records what was pulled and where its cleanup ran."""

    def __init__(self, count: int, *, fail_after: int | None = None) -> None:
        self.count, self.fail_after = count, fail_after
        self.pulled = 0
        self.pulled_enough = threading.Event()
        self.want = count
        self.closed_in: str | None = None
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        try:
            for n in range(self.count):
                if self.fail_after is not None and n == self.fail_after:
                    raise CenterUnreachable("center at https://c is unreachable: cut")
                self.pulled += 1
                if self.pulled >= self.want:
                    self.pulled_enough.set()
                yield bytes([n]) * (n + 1)
        finally:
            self.closed_in = threading.current_thread().name
            self.closed.set()


def test_chunks_arrive_in_order_and_advance_counts_them() -> None:
    source = Source(50)
    seen: list[int] = []
    with ReadAhead(source, depth=3, advance=seen.append) as body:
        chunks = list(body)
    assert chunks == [bytes([n]) * (n + 1) for n in range(50)]
    assert seen == [n + 1 for n in range(50)]
    assert source.closed.is_set()  # the producer ran the source to its end and was joined


def test_the_producer_runs_ahead_by_at_most_depth_chunks() -> None:
    depth = 4
    source = Source(100)
    source.want = depth + 1  # `depth` queued plus the one the producer holds while it waits for room
    with ReadAhead(source, depth=depth) as body:
        chunks = iter(body)
        first = next(chunks)  # starts the producer; the consumer now takes nothing
        assert source.pulled_enough.wait(WAIT)  # it read ahead without the consumer...
        time.sleep(0.3)  # ...and, given time, no further than the bound
        assert source.pulled <= 1 + depth + 1
        assert first == b"\x00"
        rest = list(chunks)
    assert len(rest) == 99


def test_a_download_error_is_raised_by_the_consumer_after_the_chunks_before_it() -> None:
    source = Source(10, fail_after=3)
    got: list[bytes] = []

    def consume(body: ReadAhead) -> None:
        for chunk in body:
            got.append(chunk)

    with ReadAhead(source, depth=2) as body, pytest.raises(CenterUnreachable, match="cut"):
        consume(body)
    assert got == [b"\x00", b"\x01\x01", b"\x02\x02\x02"]


def test_leaving_early_stops_the_producer_and_closes_the_source_in_its_thread() -> None:
    source = Source(1000)
    with ReadAhead(source, depth=2) as body:
        next(iter(body))
    assert source.closed.wait(WAIT)
    assert source.closed_in == "coffer-download"
    assert source.pulled < 1000


def test_an_exception_in_the_consumer_also_stops_the_producer() -> None:
    source = Source(1000)

    def upload(body: ReadAhead) -> None:
        for _ in body:
            raise RuntimeError("upload broke")

    with pytest.raises(RuntimeError, match="upload broke"), ReadAhead(source, depth=2) as body:
        upload(body)
    assert source.closed.wait(WAIT)


def test_start_reads_ahead_before_the_first_iteration_and_leaving_still_closes_the_source() -> None:
    source = Source(100)
    source.want = 2
    with ReadAhead(source, depth=2).start() as body:
        assert source.pulled_enough.wait(WAIT)  # pulled with nobody iterating yet
        assert next(iter(body)) == b"\x00"
    assert source.closed.wait(WAIT)
    never = Source(100)
    never.want = 1
    with ReadAhead(never, depth=2).start():  # started, never iterated (the upload failed at once)
        assert never.pulled_enough.wait(WAIT)
    assert never.closed.wait(WAIT)
    assert never.closed_in == "coffer-download"


def test_a_read_ahead_is_iterated_once() -> None:
    with ReadAhead(Source(1), depth=1) as body:
        assert list(body) == [b"\x00"]
        with pytest.raises(RuntimeError, match="once"):
            list(body)


def test_depth_must_be_positive() -> None:
    with pytest.raises(ValueError, match="depth"):
        ReadAhead([], depth=0)


@pytest.mark.parametrize(
    "sizes", [[16384] * 200, [1, 2, 3] * 50000, [70000], [], [5000] * 7, [1 << 20, 7, 1 << 20]]
)
def test_gathered_keeps_every_byte_in_order_in_chunks_of_the_asked_size(sizes: list[int]) -> None:
    pieces = [bytes([n % 251]) * size for n, size in enumerate(sizes)]
    chunks = list(gathered(pieces, 1 << 20, first=65536))
    assert b"".join(chunks) == b"".join(pieces)
    assert all(chunks)
    if chunks:
        assert len(chunks[0]) >= 65536 or len(chunks) == 1
        assert all(len(c) >= 1 << 20 for c in chunks[1:-1])
        assert len(chunks[0]) < 65536 + max(sizes)
        assert all(len(c) < (1 << 20) + max(sizes) for c in chunks)


def test_gathered_hands_on_a_whole_piece_without_copying_it() -> None:
    piece = bytes(1 << 20)
    (chunk,) = gathered([piece], 1 << 20)
    assert chunk is piece
