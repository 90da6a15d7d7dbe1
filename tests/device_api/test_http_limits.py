"""Limits of the served device (issue 12 #8), against the uvicorn server `device_os serve` builds (httptools):
an oversized request line or header block is refused before the app sees it (414 / 431, or the connection
closes), never buffered without bound; cross-site POSTs to the public JSON routes are refused unless they
say `Content-Type: application/json` (a browser form can send text/plain or no type without a preflight)."""

from __future__ import annotations

import contextlib
import socket

import pytest

from tests.device_api.live import PIN, LiveDevice

pytestmark = [pytest.mark.swtpm, pytest.mark.integration]
KIB = 1024


def _raw(live: LiveDevice, head: bytes) -> int | None:
    """Send a raw request head; the status code answered, None when the connection closed without one."""
    host, port = live.settings.address()
    with socket.create_connection((host, port), timeout=30) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # refused while still sending
            sock.sendall(head)
        answer = b""
        try:
            while b"\r\n" not in answer:
                data = sock.recv(4096)
                if not data:
                    break
                answer += data
        except ConnectionResetError:
            pass
    if not answer.startswith(b"HTTP/1.1 "):
        return None
    return int(answer[9:12])


def _head(live: LiveDevice, target: str, *headers: str) -> bytes:
    host, port = live.settings.address()
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}:{port}", *headers, "Connection: close", "", ""]
    return "\r\n".join(lines).encode("ascii")


def test_an_ordinary_request_with_a_large_order_header_passes(live: LiveDevice) -> None:
    assert _raw(live, _head(live, "/v1/health", "Coffer-Order: " + "a" * 12288)) == 200


@pytest.mark.parametrize("size", [64 * KIB, 1024 * KIB])
def test_an_oversized_url_is_refused(live: LiveDevice, size: int) -> None:
    status = _raw(live, _head(live, "/v1/health?pad=" + "a" * size))
    assert status == 414 or (size > 64 * KIB and status is None), status  # a reset may beat the answer


@pytest.mark.parametrize(
    "headers",
    [
        ["X-Pad: " + "a" * (64 * KIB)],  # one long header
        ["X-Pad: " + "a" * (1024 * KIB)],
        [f"X-Pad-{i}: {'a' * 20}" for i in range(2000)],  # many short ones
    ],
    ids=["64KiB", "1MiB", "2000-headers"],
)
def test_an_oversized_header_block_is_refused(live: LiveDevice, headers: list[str]) -> None:
    status = _raw(live, _head(live, "/v1/health", *headers))
    assert status == 431 or (len(headers[0]) > 64 * KIB and status is None), status


@pytest.mark.parametrize("path", ["/v1/setup", "/v1/unlock"])
@pytest.mark.parametrize("content_type", ["text/plain", None, "application/x-www-form-urlencoded"])
def test_public_json_posts_need_application_json(
    live: LiveDevice, path: str, content_type: str | None
) -> None:
    if path == "/v1/unlock":
        live.setup()
    before = live.snapshot()
    tries = live.failed_tries()
    headers = {} if content_type is None else {"Content-Type": content_type}
    r = live.client.post(path, content=f'{{"pin": "{PIN}"}}'.encode(), headers=headers)
    if content_type is None:  # httpx sends none for raw bytes: make sure the test really sent none
        assert "content-type" not in r.request.headers
    assert r.status_code == 415, r.text
    assert r.json()["type"] == "urn:coffer:problem:unsupported-media-type"
    assert live.snapshot() == before
    assert live.failed_tries() == tries
    assert live.device.phase().value == ("not-set-up" if path == "/v1/setup" else "locked")
    # The same body as JSON works.
    ok = live.client.post(
        path, content=f'{{"pin": "{PIN}"}}'.encode(), headers={"Content-Type": "application/json"}
    )
    assert ok.status_code in (200, 201), ok.text
