"""The gate: one pure ASGI middleware in front of every route (DESIGN.md "Device API", "Threat model").

In order, before routing and before a body byte is read:
1. `Host` must be the configured listen address, with or without its port (DNS rebinding) -> 421;
2. the route's policy comes from `device_os.api.access.POLICIES` (a routed request without one fails closed);
3. `TOKEN` routes need a live bearer token of the current unlock session -> 401 (the wallet it unlocks is
   handed to the route in `request.state.wallet`); while such a request runs (body and response streaming
   included) the device does not auto-lock (`DeviceService.busy`);
4. a declared `Content-Length` above the route's limit -> 413, and the limit holds while reading too
   (chunked bodies, lying lengths);
5. a `json_only` route (the public POSTs: setup, unlock) needs `Content-Type: application/json` -> 415, so a
   cross-site form post (text/plain, urlencoded, no type: no CORS preflight) never reaches it, whatever the
   installed FastAPI does with such a body.
No CORS: nothing here or elsewhere emits Access-Control-* headers, so browsers keep other origins out.
Every response gets `Cache-Control: no-store`. Any exception that escapes a route ends in the one handler
(`device_os.api.problems.handle`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from contextlib import nullcontext

import anyio.to_thread
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from device_os.api.access import POLICIES, UNROUTED_MAX_BODY, Access, Policy
from device_os.api.errors import MisdirectedRequest, PayloadTooLarge, UnsupportedMediaType
from device_os.api.problems import handle
from device_os.api.service import DeviceService

log = logging.getLogger("device_os.api")
_BEARER_RE = re.compile(r"\A[Bb][Ee][Aa][Rr][Ee][Rr] +(\S+)\Z")


class Gate:
    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Iterable[tuple[str, str]],
        service: DeviceService,
        allowed_hosts: frozenset[str],
    ) -> None:
        self.app = app
        self.service = service
        self.allowed_hosts = allowed_hosts
        # (method, path regex, policy) of every routed (method, path); a route without a policy fails closed
        self._routes = [
            (method, compile_path(path)[0], POLICIES.get((method, path))) for method, path in routes
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_guarded(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name in [k for k in headers if k.lower().startswith("access-control-")]:
                    del headers[name]
                if "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        try:
            headers = Headers(scope=scope)
            self._check_host(headers)
            policy = self._policy(scope)
            limit = policy.max_body if policy is not None else UNROUTED_MAX_BODY
            if policy is not None and policy.access is Access.TOKEN:
                token = _bearer(headers)
                wallet = await anyio.to_thread.run_sync(self.service.authenticate, token)
                scope.setdefault("state", {})["wallet"] = wallet
            self._check_length(headers, limit)
            if policy is not None and policy.json_only:
                _check_json(headers)
            # An authenticated request in progress (an upload, a content stream) keeps the device awake.
            awake = (
                self.service.busy() if policy is not None and policy.access is Access.TOKEN else nullcontext()
            )
            with awake:
                await self.app(scope, _limited(receive, limit), send_guarded)
        except Exception as exc:
            if started:  # too late for a problem response: the client sees a cut response
                log.error("error after the response started: %s", type(exc).__name__)
                return
            response = await handle(Request(scope), exc)
            await response(scope, receive, send_guarded)

    def _check_host(self, headers: Headers) -> None:
        host = headers.get("host", "").strip().lower()
        if host not in self.allowed_hosts:
            raise MisdirectedRequest("the Host header must name the device's listen address")

    def _policy(self, scope: Scope) -> Policy | None:
        """The policy of the route that fully matches, None when no route does (404/405 follow)."""
        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        path = scope["path"]
        for route_method, regex, policy in self._routes:
            if route_method == method and regex.match(path):
                if policy is None:
                    raise RuntimeError(f"no access policy for {method} {path}")  # fail closed (500)
                return policy
        return None

    @staticmethod
    def _check_length(headers: Headers, limit: int) -> None:
        declared = headers.get("content-length")
        if declared is None:
            return
        if not declared.isdigit():
            raise StarletteHTTPException(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise PayloadTooLarge(f"the request body exceeds {limit} bytes")


def _check_json(headers: Headers) -> None:
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType("the request body must be sent as Content-Type: application/json")


def _bearer(headers: Headers) -> str | None:
    value = headers.get("authorization")
    if value is None:
        return None
    match = _BEARER_RE.match(value.strip())
    return match.group(1) if match else ""


def _limited(receive: Receive, limit: int) -> Receive:
    """`receive` that refuses more than `limit` body bytes, however they are framed."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                # FastAPI re-raises HTTPExceptions from body reading; the handler maps it to 413.
                raise StarletteHTTPException(413, f"the request body exceeds {limit} bytes")
        return message

    return wrapped
