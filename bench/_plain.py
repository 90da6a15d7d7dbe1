"""The plain-copy reference of bench/purchase_e2e.py: the same bytes along the same path, no Coffer work.

    python -m bench._plain source FILE HOST:PORT CERT KEY   # in `center`: GET / answers FILE over HTTPS
    python -m bench._plain sink HOST:PORT                  # in `board`: POST / drains the body, answers 204
    python -m bench._plain store HOST:PORT DIR             # in `board`: POST / stores the body durably in DIR
    python -m bench._plain relay SOURCE_URL CA SINK_URL    # in `pc`: GET streamed into POST, prints seconds

The relay moves 1 MiB chunks from an httpx streamed GET into an httpx POST with Content-Length, the download
read ahead in its own thread and gathered into chunks as terminal_cli's purchase does
(`terminal_cli.readahead.ReadAhead`, `gathered`); the
servers are uvicorn (httptools), as the center and the device are.

Two receivers on the board: `sink` discards the body (the network path alone); `store` is what an HTTP upload
receiver that keeps the bytes does — write them to a temp file on the device's data filesystem (its writeback
started every 8 MiB, as the device does), fsync, rename, fsync the directory, then answer 204 — so that the
storage work the purchase must do (it answers only once the item is durable) is in the reference too, and
the ratio against it is Coffer's own cost (crypto, hashing, the commit, the protocol's round trips). The
benchmark deletes the stored file (`upload.bin` in DIR) after each round, untimed, as it deletes the purchased
item.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
CHUNK = 1024 * 1024
WRITEBACK = 8 * 1024 * 1024  # as device_os.core.content.EARLY_WRITEBACK


def _source(path: str) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    size = os.path.getsize(path)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = [(b"content-length", str(size).encode()), (b"content-type", b"application/octet-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


async def _sink(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _store(directory: str) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        tmp, final = os.path.join(directory, "upload.tmp"), os.path.join(directory, "upload.bin")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        written = started = 0
        try:
            more = True
            while more:
                message = await receive()
                more = message.get("more_body", False)
                view = memoryview(message.get("body", b""))
                while view:
                    n = os.write(fd, view)
                    view, written = view[n:], written + n
                if written - started >= WRITEBACK:
                    os.posix_fadvise(fd, started, written - started, os.POSIX_FADV_DONTNEED)
                    started = written
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


def _serve(app: Callable[[Scope, Receive, Send], Awaitable[None]], listen: str, **tls: str) -> None:
    import uvicorn

    host, port = listen.rsplit(":", 1)
    uvicorn.run(app, host=host, port=int(port), log_level="warning", http="httptools", **tls)


def _relay(source: str, ca: str, sink: str) -> float:
    import httpx

    from terminal_cli.readahead import ReadAhead, gathered

    # The clock starts once the clients exist, as terminal_cli's purchase clock starts after its clients are
    # built (an httpx client loads its CA bundle when made: 5-30 ms that are not the copy's).
    center = httpx.Client(verify=ca, timeout=300)
    board = httpx.Client(timeout=300, trust_env=False)
    started = time.perf_counter()
    with center, board, center.stream("GET", source) as response:
        length = response.headers["content-length"]
        with ReadAhead(gathered(response.iter_raw(), CHUNK)) as body:
            answer = board.post(sink, content=body, headers={"Content-Length": length})
        answer.raise_for_status()
    return time.perf_counter() - started


def main(argv: list[str]) -> int:
    role, *args = argv
    if role == "source":
        _serve(_source(args[0]), args[1], ssl_certfile=args[2], ssl_keyfile=args[3])
    elif role == "sink":
        _serve(_sink, args[0])
    elif role == "store":
        _serve(_store(args[1]), args[0])
    elif role == "relay":
        print(f"{_relay(*args):.6f}")
    else:
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
