"""Request body limits (pure ASGI): the commerce routes take small JSON bodies; a larger one is refused with
413 problem+json — at once from `Content-Length`, and as soon as a chunked or lying body passes the limit
(never more than the limit and one chunk is held). GET routes take no body (nothing sent is buffered)."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from protocol.problems import PROBLEM_CONTENT_TYPE, problem_body

#: The largest JSON body any center route accepts (an identity with its EK certificate is ~6 KiB).
MAX_BODY = 64 * 1024


async def _refuse(send: Send) -> None:
    body = json.dumps(
        problem_body("payload-too-large", f"the request body exceeds {MAX_BODY} bytes")
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and (not value.isdigit() or int(value) > self.limit):
                await _refuse(send)
                return
        # Small bodies only: read it here (at most limit + one chunk), then hand it on in one message.
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.limit:
                await _refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
