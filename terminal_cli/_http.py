"""What both clients share: the URL rules, problem+json and transport errors translated once (STYLE.md 8)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
from collections.abc import Iterator
from typing import Any, NoReturn
from urllib.parse import urlsplit

import httpx

from terminal_cli.errors import (
    CenterUnreachable,
    DeviceUnreachable,
    InsecureCenter,
    Origin,
    TerminalError,
    UsageError,
    from_problem,
)

USER_AGENT = "coffer-terminal_cli/0.1"


def _host_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return None


def check_center_url(url: str) -> str:
    """The center's base URL without a trailing slash: https://, or http:// to loopback only (the demo)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"center URL {url!r} is not an http(s) URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UsageError(f"center URL {url!r} must be an origin (scheme, host, port) without a path")
    if parts.scheme == "http":
        ip = _host_ip(parts.hostname)
        if parts.hostname != "localhost" and (ip is None or not ip.is_loopback):
            raise InsecureCenter(
                f"refusing plain http:// to the center at {parts.hostname}: use https:// "
                "(http is allowed only on loopback)"
            )
    return url.rstrip("/")


def check_device_url(url: str) -> str:
    """The device's base URL: http:// to an IP literal on the USB link (link-local, private or loopback)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"device URL {url!r} is not an http(s) URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UsageError(f"device URL {url!r} must be an origin (scheme, host, port) without a path")
    ip = _host_ip(parts.hostname)
    if parts.scheme == "http" and (ip is None or not (ip.is_private or ip.is_link_local or ip.is_loopback)):
        raise UsageError(
            f"device URL {url!r}: the board is reached by the IP address of its USB link "
            "(link-local, private or loopback), not by a name"
        )
    return url.rstrip("/")


def raise_problem(origin: Origin, response: httpx.Response) -> NoReturn:
    """Raise the translated error for an error answer (problem+json, or anything else of that status)."""
    body: Any = None
    with contextlib.suppress(httpx.ResponseNotRead, json.JSONDecodeError, UnicodeDecodeError):
        body = json.loads(response.content) if response.content else None
    if not isinstance(body, dict):
        body = {
            "type": "about:blank",
            "title": f"HTTP {response.status_code}",
            "status": response.status_code,
        }
    raise from_problem(origin, body, response.status_code)


def check(origin: Origin, response: httpx.Response) -> httpx.Response:
    """`response` when it is a success (2xx); otherwise its translated error."""
    if response.is_success:
        return response
    if response.is_stream_consumed is False:
        with contextlib.suppress(httpx.HTTPError):
            response.read()
    raise_problem(origin, response)


@contextlib.contextmanager
def transport_errors(origin: Origin, base_url: str) -> Iterator[None]:
    """httpx transport failures → CenterUnreachable / DeviceUnreachable (one line, the cause named)."""
    try:
        yield
    except httpx.TransportError as exc:
        cls: type[TerminalError] = CenterUnreachable if origin == "center" else DeviceUnreachable
        reason = str(exc) or type(exc).__name__
        raise cls(f"{origin} at {base_url} is unreachable: {reason}") from exc
