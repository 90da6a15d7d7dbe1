"""Orders (DESIGN.md flow 5): `POST /v1/orders`, `GET /v1/orders/{order_id}`, `GET …/content` (content
stream v1 made on the fly, Range), `POST …/payment` (settlement, the receipt)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from center.api.deps import ContextDep, DeviceDep, TokenDeviceDep, run_write
from center.api.openapi import problem_responses
from center.errors import StorageError
from center.services.delivery import Delivery
from protocol.center_api import (
    IDEMPOTENCY_HEADER,
    IdempotencyKey,
    OrderAnswer,
    OrderRequest,
    OrderStatus,
    PaymentAnswer,
    PaymentRequest,
)
from protocol.http.ranges import content_range, parse_range

router = APIRouter(tags=["orders"])
OrderIdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
STREAM_TYPE = "application/octet-stream"


@router.post(
    "/v1/orders",
    status_code=201,
    response_model=OrderAnswer,
    responses={
        200: {"description": "The order this Idempotency-Key already made", "model": OrderAnswer},
        **problem_responses(
            "unauthorized",
            "insufficient-funds",
            "device-revoked",
            "unpaid-limit",
            "not-found",
            "idempotency-mismatch",
            "wrong-device",
            "conflict",
            "service-unavailable",
        ),
    },
)
async def create_order(
    body: OrderRequest,
    device: TokenDeviceDep,
    context: ContextDep,
    response: Response,
    idempotency_key: Annotated[IdempotencyKey, Header(alias=IDEMPOTENCY_HEADER)],
) -> OrderAnswer:
    """Hold the price, make a fresh Ke and salt, answer the signed order with Ke wrapped to the device."""
    answer, created = await run_write(
        context.orders.create, body, device.device_id, idempotency_key, device.token_hash
    )
    response.status_code = 201 if created else 200
    return answer


@router.get(
    "/v1/orders/{order_id}",
    response_model=OrderStatus,
    responses=problem_responses("unauthorized", "not-found", "service-unavailable"),
)
async def order_status(order_id: OrderIdPath, device: DeviceDep, context: ContextDep) -> OrderStatus:
    return await run_in_threadpool(context.orders.get, order_id, device)


_BINARY = {STREAM_TYPE: {"schema": {"type": "string", "format": "binary"}}}
_CONTENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The whole content stream v1 of this order", "content": _BINARY},
    206: {"description": "One byte range of the stream (Range: bytes=…)", "content": _BINARY},
    **problem_responses(
        "unauthorized", "not-found", "order-expired", "range-not-satisfiable", "service-unavailable"
    ),
}


@router.get("/v1/orders/{order_id}/content", response_class=Response, responses=_CONTENT_RESPONSES)
async def order_content(
    order_id: OrderIdPath,
    device: DeviceDep,
    context: ContextDep,
    range_header: Annotated[str | None, Header(alias="Range", max_length=200)] = None,
    if_range: Annotated[str | None, Header(alias="If-Range", max_length=200)] = None,
) -> Response:
    """Ke[M] made now from the item's plaintext: the same bytes on every request, any Range.

    An order's first delivery is recorded (`record_delivery`, an fsynced commit) while its stream starts,
    not before: the read-only checks (the order, its device, not expired) come first and refuse before any
    byte; the stream's last chunk waits for the record (`_last_after`): no delivery completes unrecorded."""

    def prepare() -> tuple[Delivery, bool]:
        order, first = context.orders.delivery_check(order_id, device)
        if context.blobs.size(order.blob_sha256) != order.content_length:
            raise StorageError(f"the content blob of {order.item_id} is not the item's length")
        return Delivery.of(order, context.keys.data_key), first

    delivery, first = await run_in_threadpool(prepare)
    length = delivery.length
    etag = f'"{delivery.order.order_hash}"'
    span = parse_range(range_header, length) if if_range in (None, etag) else None
    start, end = span if span is not None else (0, length)
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Cache-Control": "no-store",
        "Content-Length": str(end - start),
    }
    if span is not None:
        headers["Content-Range"] = content_range(span, length)
    chunks = delivery.chunks(context.blobs, start, end)
    recorded = _recording(context.orders.record_delivery, order_id, device) if first else None
    return StreamingResponse(
        chunks if recorded is None else _last_after(chunks, end - start, recorded),
        status_code=206 if span is not None else 200,
        media_type=STREAM_TYPE,
        headers=headers,
    )


def _recording(record: Callable[[str, str], None], order_id: str, device: str) -> asyncio.Task[None]:
    """`record(order_id, device)` (the first delivery's commit) started now in the thread pool."""
    task = asyncio.ensure_future(run_write(record, order_id, device))
    task.add_done_callback(_retrieved)
    return task


def _retrieved(task: asyncio.Task[None]) -> None:
    """A stream that ended early never awaits its record: its outcome is taken here (no "never retrieved")."""
    if not task.cancelled():
        task.exception()


async def _last_after(
    chunks: Iterator[bytes], length: int, recorded: asyncio.Task[None]
) -> AsyncIterator[bytes]:
    """`chunks` (made in the thread pool; `length` bytes in all), the last one held back until `recorded` is
    done. If the record fails (the order expired, or was released, since the read-only check), that error
    ends the response short of its Content-Length: the server drops the connection and the device, missing
    the stream's last segment, refuses the import (no payment, no debit)."""
    sent = 0
    async for chunk in iterate_in_threadpool(chunks):
        sent += len(chunk)
        if sent >= length:
            await recorded
        yield chunk


@router.post(
    "/v1/orders/{order_id}/payment",
    response_model=PaymentAnswer,
    responses=problem_responses(
        "unauthorized",
        "not-found",
        "invalid-payment",
        "invalid-signature",
        "order-settled",
        "service-unavailable",
    ),
)
async def pay(
    order_id: OrderIdPath, body: PaymentRequest, device: TokenDeviceDep, context: ContextDep
) -> PaymentAnswer:
    """Settle the payment exactly once and answer the receipt (the same one for the same payment)."""
    return await run_write(
        context.settlement.pay, order_id, body.payment, device.device_id, device.token_hash
    )
