"""Purchases over HTTP: flow 5.3 with the request body streamed into the core (DESIGN.md "Device API",
flow 5.3, "Content stream v1").

    answer = await import_purchase(request, wallet, order_jws, mode="now", repurchase=False)

Order of checks (DESIGN.md "Device API"): a committed order_id is answered from the stored result before any
other check and before a body byte is read (`order-settled` once its receipt cleared the outbox); then the
order header is verified (key set, device, `exp` against the time floor, ownership, segment size, funds);
then the 42-byte stream header is read and must match the order (AEAD, segment size <= 1 MiB); only then does
the core unwrap Ke (TPM2_ECDH_ZGen) and stage the content; one commit ends it.

The body never sits whole in memory: the event loop reads `request.stream()`, gathers chunks into batches of
about `BATCH_BYTES` (lists, never joined: no copy) and hands them through a bounded `Handoff`
(`QUEUE_BATCHES` deep; the worker takes a batch without a round trip through the loop) to one worker thread
running the blocking core work (decrypt -> SHA-256 -> re-encrypt under the DEK -> temp blob, fsync ->
commit). Backpressure flows back to the socket: the loop stops reading while the queue is full.
The worker's content work is the core's `content.import_stream` (in-place decryption, one SHA-256,
re-encryption into a reused buffer, ~1 MiB writes). Memory per upload is bounded by (QUEUE_BATCHES + 2) x
BATCH_BYTES plus the core's ~4 MiB of staging buffers.

A refused stream, a client that disconnects mid-upload, a body longer than the order's stream: the core aborts
staging and deletes its temp blob, nothing is committed (no state change). So does a lock, at once, even while
the PC holds the rest of the body back: the lock fails the hand-off (`_CutAtLock`), the worker's staging
unwinds and drops the DEK with it (issue 12 #9).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Literal

import anyio
import anyio.to_thread
from starlette.requests import ClientDisconnect, Request

from device_os.api.errors import ApiError
from device_os.api.handoff import Handoff, HandoffClosed
from device_os.core.answers import PurchaseAnswer
from device_os.core.content import MAX_SEGMENT_SIZE
from device_os.core.wallet import Wallet
from device_os.errors import ContentMismatch, CorruptContent, InvalidMessage, Locked
from protocol import jws, stream
from protocol.errors import JwsError, SegmentTooLarge, StreamError
from protocol.messages import Order

PurchaseMode = Literal["now", "deferred"]

#: Bytes gathered from the socket before one hand-off to the worker thread.
BATCH_BYTES = 1024 * 1024
#: Batches in flight between the event loop and the worker.
QUEUE_BATCHES = 4
_LONGER = "the body is longer than the order's content stream"


class SegmentSizeRefused(ApiError):
    """The order's or the stream's segment size exceeds the device's 1 MiB limit (problem
    `segment-too-large`). Named apart from `protocol.errors.SegmentTooLarge`, the stream reader's error it
    translates."""

    slug = "segment-too-large"


class UploadAborted(ApiError):
    """The client stopped sending before the stream ended (a disconnect): nothing was committed."""

    slug = "bad-request"


class _CutAtLock:
    """Registered with the wallet while an upload is staged: the device's lock fails the hand-off, so a worker
    waiting for the next batch stops now (Locked), not when the PC sends more."""

    def __init__(self, pipe: Handoff[list[bytes]]) -> None:
        self._pipe = pipe

    def cut(self) -> None:
        self._pipe.fail(Locked("the device locked during the upload; nothing was committed"))


def order_id_of(order_jws: str) -> str:
    """The `order_id` of an order JWS, unverified: only to look up a stored answer (DESIGN.md: "answered
    from the stored result before any other check"). Everything else waits for the signature check."""
    try:
        return jws.unverified_member(order_jws, "order_id")
    except JwsError as exc:
        raise InvalidMessage("Coffer-Order is not a compact JWS with an order_id") from exc


def _verify(wallet: Wallet, order_jws: str, repurchase: bool) -> PurchaseAnswer | Order:
    """Stored answer first, then the core's order checks (in a worker thread: ECDSA verify, state reads)."""
    answer = wallet.stored_answer(order_id_of(order_jws))
    if answer is not None:
        return answer
    try:
        return wallet.verify_order(order_jws, repurchase=repurchase)
    except CorruptContent as exc:  # the only content judgement before the body: the order's segment size
        raise SegmentSizeRefused(f"the order's segment size exceeds {MAX_SEGMENT_SIZE} bytes") from exc


def check_header(head: bytes, order: Order) -> None:
    """The stream's 42-byte header must parse and name the order's AEAD and segment size."""
    try:
        header = stream.Header.parse(head, max_segment_size=MAX_SEGMENT_SIZE)
    except SegmentTooLarge as exc:
        raise SegmentSizeRefused(f"the stream's segment size exceeds {MAX_SEGMENT_SIZE} bytes") from exc
    except StreamError as exc:
        raise CorruptContent(f"content stream: {type(exc).__name__}") from exc
    if header.aead != order.aead or header.segment_size != order.segment_size:
        raise CorruptContent("the content stream's header does not match the order (AEAD, segment size)")


async def _read_head(body: AsyncIterator[bytes]) -> tuple[bytes, bytes]:
    """(the 42-byte stream header, what followed it in the same chunks)."""
    head = bytearray()
    while len(head) < stream.HEADER_SIZE:
        try:
            chunk = await body.__anext__()
        except StopAsyncIteration:
            raise CorruptContent("content stream: Truncated (the body ends inside the header)") from None
        except ClientDisconnect:
            raise UploadAborted("the upload ended before the content stream did") from None
        head += chunk
    return bytes(head[: stream.HEADER_SIZE]), bytes(head[stream.HEADER_SIZE :])


async def _feed(body: AsyncIterator[bytes], first: bytes, limit: int, pipe: Handoff[list[bytes]]) -> None:
    """Socket -> batches -> the worker. Never raises: every way of stopping early (a disconnect, a body too
    long, the gate's 413, a cancellation) becomes the error the worker raises after the batches before it."""
    outcome: BaseException | None = UploadAborted("the upload ended before the content stream did")
    try:
        batch: list[bytes] = [first] if first else []
        size = total = len(first)
        async for chunk in body:
            total += len(chunk)
            if total > limit:
                outcome = ContentMismatch(_LONGER)
                return
            batch.append(chunk)
            size += len(chunk)
            if size >= BATCH_BYTES:
                await pipe.put(batch)
                batch, size = [], 0
        if batch:
            await pipe.put(batch)
        outcome = None
        pipe.end()
    except ClientDisconnect:
        pass  # the default outcome
    except HandoffClosed:
        outcome = None  # the worker stopped reading (it refused the stream): nobody to tell
    except Exception as exc:  # e.g. the gate's body limit (413): the worker raises it, aborting
        outcome = exc
    finally:
        if outcome is not None:
            pipe.fail(outcome)


def _chunks(pipe: Handoff[list[bytes]], head: bytes, wallet: Wallet) -> Iterator[bytes]:
    """The worker's view of the body: the header, then each batch; raises what the feeder reported, and
    Locked at the next batch once the device locked (the import aborts: temp blob removed, no commit)."""
    yield head
    while (batch := pipe.get()) is not None:
        if wallet.closed:
            raise Locked("the device locked during the upload; nothing was committed")
        yield from batch


def _stage_and_commit(
    wallet: Wallet,
    order: Order,
    order_jws: str,
    chunks: Iterator[bytes],
    mode: PurchaseMode,
    repurchase: bool,
) -> PurchaseAnswer:
    """Blocking: ECDH_ZGen + the streamed import (core `stage`), then the one commit (Sign, NV_Increment)."""
    try:
        staged = wallet.stage(order, chunks, mode, order_jws=order_jws)
    except CorruptContent as exc:
        if isinstance(exc.__cause__, SegmentTooLarge):  # pragma: no cover - the header check ran first
            raise SegmentSizeRefused(f"the stream's segment size exceeds {MAX_SEGMENT_SIZE} bytes") from exc
        raise
    return wallet.commit_purchase(order_jws, staged, repurchase=repurchase)


async def import_purchase(
    request: Request, wallet: Wallet, order_jws: str, *, mode: PurchaseMode, repurchase: bool
) -> PurchaseAnswer:
    """Flow 5.3 over HTTP; see the module docstring for the order of checks and the memory bound."""
    verdict = await anyio.to_thread.run_sync(_verify, wallet, order_jws, repurchase)
    if isinstance(verdict, PurchaseAnswer):
        return verdict  # the body is never read
    order = verdict
    body = request.stream().__aiter__()
    head, rest = await _read_head(body)
    check_header(head, order)
    limit = stream.ciphertext_length(order.content_length, order.segment_size) - stream.HEADER_SIZE
    if len(rest) > limit:
        raise ContentMismatch(_LONGER)
    pipe = Handoff[list[bytes]](QUEUE_BATCHES)
    cut = _CutAtLock(pipe)  # held (the wallet keeps it weakly) until the upload ends
    wallet.cut_at_lock(cut)

    def work() -> PurchaseAnswer:
        try:
            return _stage_and_commit(wallet, order, order_jws, _chunks(pipe, head, wallet), mode, repurchase)
        finally:
            pipe.close()

    outcome: PurchaseAnswer | BaseException | None = None
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(_feed, body, rest, limit, pipe)
        try:
            outcome = await anyio.to_thread.run_sync(work)
        except Exception as exc:  # re-raised below, outside the task group (no ExceptionGroup wrapping)
            outcome = exc
            tasks.cancel_scope.cancel()
    if isinstance(outcome, BaseException):
        raise outcome
    assert outcome is not None
    return outcome


__all__ = [
    "BATCH_BYTES",
    "QUEUE_BATCHES",
    "SegmentSizeRefused",
    "UploadAborted",
    "check_header",
    "import_purchase",
    "order_id_of",
]
