"""uvicorn's httptools protocol with bounds on the request head (DESIGN.md "Device API": body size limits;
issue 12 #8). uvicorn bounds the head only for h11 (`h11_max_incomplete_event_size`); the device serves with
httptools, whose parser buffers a header of any length. Here, before the app sees a request:

- a request target (path and query) longer than `MAX_REQUEST_TARGET` bytes -> 414;
- a request head (request line and header fields) longer than `MAX_REQUEST_HEAD` bytes -> 431, counted on the
  raw bytes while the head is still arriving, so memory stays bounded by the limit plus one read;

each with a problem+json body and `Connection: close`. `device_os.serve.build_server` uses this class.
"""

from __future__ import annotations

import http
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from protocol.problems import PROBLEM_CONTENT_TYPE, problem_body

KIB = 1024
MAX_REQUEST_TARGET = 8 * KIB
#: Room for the largest header a client sends (`Coffer-Order`, a JWS of at most 12 KiB) and the usual rest.
MAX_REQUEST_HEAD = 16 * KIB


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; httptools reports it as an HttpParserError."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._refusal: tuple[int, str] | None = None

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._refusal is None and self._in_head and self._head_bytes > MAX_REQUEST_HEAD:
            self._refuse(431, f"the request line and headers exceed {MAX_REQUEST_HEAD} bytes")

    # parser callbacks -------------------------------------------------------------------------------------
    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > MAX_REQUEST_TARGET:
            self._refusal = (414, f"the request target exceeds {MAX_REQUEST_TARGET} bytes")
            raise _Refused

    def on_headers_complete(self) -> None:
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > MAX_REQUEST_HEAD:
            self._refusal = (431, f"the request line and headers exceed {MAX_REQUEST_HEAD} bytes")
            raise _Refused
        self._in_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0

    # refusal ----------------------------------------------------------------------------------------------
    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a parser error; a refusal of ours (raised from a callback) answers instead."""
        if self._refusal is None:
            super().send_400_response(msg)
            return
        self._write_refusal(*self._refusal)

    def _refuse(self, status: int, detail: str) -> None:
        self._refusal = (status, detail)
        self._write_refusal(status, detail)

    def _write_refusal(self, status: int, detail: str) -> None:
        body = json.dumps(problem_body("bad-request", detail) | {"status": status}).encode("ascii")
        head = (
            f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n"
            f"content-type: {PROBLEM_CONTENT_TYPE}\r\n"
            f"content-length: {len(body)}\r\n"
            "cache-control: no-store\r\n"
            "connection: close\r\n\r\n"
        )
        if not self.transport.is_closing():
            self.transport.write(head.encode("ascii") + body)
            self.transport.close()


__all__ = ["MAX_REQUEST_HEAD", "MAX_REQUEST_TARGET", "BoundedHttpToolsProtocol"]
