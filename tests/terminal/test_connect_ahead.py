"""`CenterClient.connect`: the connection a purchase opens while it checks the library and journals its
key is the one its order then uses; an unreachable center makes it return quietly (the order reports it)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from terminal_cli.center import CenterClient
from terminal_cli.errors import CenterUnreachable


class _Counting(ThreadingHTTPServer):
    daemon_threads = True
    connections = 0
    requests: list[str]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: _Counting

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        body = json.dumps({"status": "ok"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def center_server() -> Iterator[_Counting]:
    server = _Counting(("127.0.0.1", 0), _Handler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_the_connection_opened_ahead_is_the_one_the_next_request_uses(center_server: _Counting) -> None:
    with CenterClient(f"http://127.0.0.1:{center_server.server_address[1]}") as center:
        center.connect()
        assert center_server.connections == 1
        assert center.health() == {"status": "ok"}
    assert center_server.requests == ["/v1/health", "/v1/health"]
    assert center_server.connections == 1


def test_an_unreachable_center_is_left_for_the_next_request_to_report() -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with CenterClient(f"http://127.0.0.1:{port}") as center:
        center.connect()  # returns quietly
        with pytest.raises(CenterUnreachable):
            center.health()
