"""A lean path for `POST /v1/orders` and `POST /v1/orders/{order_id}/payment` (docs/center-commerce.md
"Performance"; the same kind of exception to "every route through FastAPI" as center.api.lean).

FastAPI's middleware stack, routing, dependency injection and validation cost about a quarter of an order's
server CPU. `LeanOrders` sits outside the whole FastAPI stack and answers only the requests it can read with
certainty, and only as the routes in center.api.routes.orders would:

- the path is exactly `/v1/orders` or `/v1/orders/{order_id}/payment` (order_id: the route's pattern), the
  method POST, no query string, no root path;
- exactly one `Content-Length` (digits, at most `limits.MAX_BODY`), no `Transfer-Encoding`, exactly one
  `Content-Type: application/json`, exactly one `Authorization: Bearer <token>` whose token has the shape of
  the routes' (20–128 base64url characters) and is one this process already knows (`TokenHints`: the
  service re-checks it under the device lock, as for the route), and for an order exactly one valid
  `Idempotency-Key`;
- the body is a JSON object with exactly the request model's members, all strings, that the model accepts
  (the same pydantic model, validated from the same `json.loads` result as FastAPI's).

It then calls the same service the route calls, in the thread pool, and answers with the same status, the
same JSON bytes (pydantic's `model_dump_json(by_alias=True)`, FastAPI's fast path) and the same headers
(`Response` with `application/json`, then `security_headers` as `SecurityHeaders` adds them). Any exception of
the service goes through the one problem+json handler (`center.api.problems.handle`), exactly as the route's
would. Everything else, and any request it cannot read with certainty, goes to FastAPI unchanged (its body
replayed as received), which validates and answers in its one place.
tests/center/test_lean_orders.py compares every answer byte for byte with the app built with
`create_app(..., lean_orders=False)`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from center.api import problems
from center.api.context import CenterContext
from center.api.limits import MAX_BODY
from center.errors import CenterError
from center.sealing import token_hash
from protocol.center_api import OrderRequest, PaymentRequest
from protocol.http.asgi import framework_problem

ORDERS = "/v1/orders"
PAYMENT = re.compile(r"\A/v1/orders/([A-Za-z0-9_-]{1,64})/payment\Z")  # the route's OrderIdPath
BEARER = re.compile(rb"\ABearer ([A-Za-z0-9_-]{20,128})\Z")  # a subset of what the routes' _token accepts
IDEMPOTENCY_KEY = re.compile(rb"\A[A-Za-z0-9_.:-]{8,128}\Z")  # protocol.center_api.IdempotencyKey
_WANTED = (b"content-length", b"content-type", b"authorization", b"idempotency-key", b"transfer-encoding")
_ORDER_MEMBERS = frozenset(OrderRequest.model_fields)
_PAYMENT_MEMBERS = frozenset(PaymentRequest.model_fields)


def _headers(scope: Scope) -> dict[bytes, bytes] | None:
    """The headers the lean path reads, each at most once (None: one of them repeated)."""
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name in _WANTED:
            if name in found:
                return None
            found[name] = value
    return found


def _json_object(body: bytes, members: frozenset[str]) -> dict[str, str] | None:
    """`body` as FastAPI reads it (json.loads), when it is an object of exactly `members`, all strings."""
    try:
        value = json.loads(body)
    except ValueError:
        return None
    if not isinstance(value, dict) or value.keys() != members:
        return None
    if not all(isinstance(v, str) for v in value.values()):
        return None
    return value


class LeanOrders:
    """Pure ASGI, outermost: answers the two hot commerce writes (see the module docstring) or hands on."""

    def __init__(self, app: ASGIApp, context: CenterContext, headers: list[tuple[bytes, bytes]]) -> None:
        self.app = app
        self.context = context
        self.headers = headers  # center.api.security.security_headers: what every response carries

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        order_id = None
        if path != ORDERS:
            match = PAYMENT.match(path)
            if match is None:
                await self.app(scope, receive, send)
                return
            order_id = match.group(1)
        ready = self._preconditions(scope, order_id is None)
        if ready is None:
            await self.app(scope, receive, send)
            return
        length, device_id, digest, key = ready
        messages, body = await _read(receive, length)
        request: OrderRequest | PaymentRequest | None = None
        if body is not None:
            request = _request(body, order_id is None)
        if request is None:
            await self.app(scope, _replay(messages, receive), send)
            return
        grouped = self.context.commerce.group is not None  # SQLite: no worker thread waits (center.db.group)
        try:
            if isinstance(request, OrderRequest):
                assert key is not None
                if grouped:
                    answer, created = await self.context.orders.create_async(request, device_id, key, digest)
                else:
                    answer, created = await run_in_threadpool(
                        self.context.orders.create, request, device_id, key, digest
                    )
                response = Response(
                    answer.model_dump_json(by_alias=True).encode(),
                    status_code=201 if created else 200,
                    media_type="application/json",
                )
            else:
                assert order_id is not None
                if grouped:
                    paid = await self.context.settlement.pay_async(
                        order_id, request.payment, device_id, digest
                    )
                else:
                    paid = await run_in_threadpool(
                        self.context.settlement.pay, order_id, request.payment, device_id, digest
                    )
                response = Response(
                    paid.model_dump_json(by_alias=True).encode(), media_type="application/json"
                )
        except Exception as exc:
            await self._failed(scope, send, exc)
            return
        await self._send(send, response, self.headers)

    def _preconditions(self, scope: Scope, order: bool) -> tuple[int, str, str, str | None] | None:
        """(body length, the token's device, the token's hash, the Idempotency-Key) when the headers are ones
        the lean path reads with certainty, else None."""
        if scope.get("query_string"):
            return None
        headers = _headers(scope)
        if headers is None or b"transfer-encoding" in headers:
            return None
        length = headers.get(b"content-length", b"")
        if not length.isdigit() or len(length) > 6 or int(length) > MAX_BODY or int(length) == 0:
            return None
        if headers.get(b"content-type") != b"application/json":
            return None
        bearer = BEARER.match(headers.get(b"authorization", b""))
        if bearer is None:
            return None
        key = None
        if order:
            raw_key = headers.get(b"idempotency-key", b"")
            if not IDEMPOTENCY_KEY.match(raw_key):
                return None
            key = raw_key.decode("ascii")
        digest = token_hash(bearer.group(1).decode("ascii"))
        device_id = self.context.commerce.tokens.get(digest)
        if device_id is None:  # not known here yet: the route looks it up (and remembers it)
            return None
        return int(length), device_id, digest, key

    async def _failed(self, scope: Scope, send: Send, exc: Exception) -> None:
        """The route's answer to `exc`: the one problem+json handler. Errors it maps (the center's own, the
        shared HTTP ones) pass `SecurityHeaders` in the FastAPI stack, so they get its headers; anything else
        is answered by Starlette's outermost ServerErrorMiddleware (no security headers) and re-raised."""
        response = await problems.handle(Request(scope), exc)
        if isinstance(exc, CenterError) or framework_problem(exc) is not None:
            await self._send(send, response, self.headers)
            return
        await self._send(send, response, [])
        raise exc

    @staticmethod
    async def _send(send: Send, response: Response, extra: list[tuple[bytes, bytes]]) -> None:
        headers = [*response.raw_headers, *extra]
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})


def _request(body: bytes, order: bool) -> OrderRequest | PaymentRequest | None:
    members = _ORDER_MEMBERS if order else _PAYMENT_MEMBERS
    value = _json_object(body, members)
    if value is None:
        return None
    try:
        return OrderRequest.model_validate(value) if order else PaymentRequest.model_validate(value)
    except ValidationError:
        return None


async def _read(receive: Receive, length: int) -> tuple[list[Message], bytes | None]:
    """The request's messages as received, and its body when it arrived whole with exactly `length` bytes."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None
        size += len(message.get("body", b""))
        if size > length:
            return messages, None
        if not message.get("more_body", False):
            break
    if size != length:
        return messages, None
    return messages, b"".join(m.get("body", b"") for m in messages)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """`receive` that first gives back the messages the lean path already took."""
    pending = list(messages)

    async def replayed() -> Any:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
