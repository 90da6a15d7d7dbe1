"""Plaintext out of the library over HTTP: the streamed response for one byte range (RFC 9110 §14; parsed by
the parser the center shares, `protocol.http.ranges`).

    opened = service.open_content(wallet, item_id, request.headers.get("range"))   # DeviceService
    response = await content_response(opened)

Plaintext is decrypted segment by segment as the client reads (`Wallet.open_item` / `read_range`, opened by
the service; this module only renders them; every
segment is authenticated before a byte of it is sent). The first chunk is produced before the response
starts, so a deferred item's first open (procedure 2: unwrap Ke, re-encrypt under the DEK, one commit) and an
unreadable blob still end in a problem+json answer rather than a cut response.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import anyio.to_thread
from starlette.responses import Response, StreamingResponse

from device_os.core.body import LibraryEntry
from protocol.http.ranges import RangeNotSatisfiable, content_range, parse_range

OCTET_STREAM = "application/octet-stream"
_PULL_BYTES = 1024 * 1024  # plaintext gathered per hop to a worker thread


@dataclass(frozen=True)
class OpenContent:
    """An owned item's plaintext as the service opened it: the whole item (`span` None) or `span` = (start,
    end); `chunks` not read yet."""

    entry: LibraryEntry
    span: tuple[int, int] | None
    chunks: Iterator[bytes]


def _gather(chunks: Iterator[bytes]) -> bytes | None:
    """Up to about `_PULL_BYTES` of plaintext (None at the end): one worker-thread hop per batch."""
    out: list[bytes] = []
    size = 0
    for chunk in chunks:
        out.append(chunk)
        size += len(chunk)
        if size >= _PULL_BYTES:
            break
    if not out:
        return None
    return out[0] if len(out) == 1 else b"".join(out)


async def _body(first: bytes | None, chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    try:
        while first is not None:
            yield first
            first = await anyio.to_thread.run_sync(_gather, chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


async def content_response(opened: OpenContent) -> Response:
    """200 with the whole plaintext, or 206 with `Content-Range` for its span."""
    entry, chunks = opened.entry, opened.chunks
    if opened.span is None:
        status, start, end = 200, 0, entry.length
    else:
        (start, end), status = opened.span, 206
    first = await anyio.to_thread.run_sync(_gather, chunks)  # deferred: the first open commits here
    headers = {
        "Content-Length": str(end - start),
        "Accept-Ranges": "bytes",
        "ETag": f'"{entry.sha256}"',
    }
    if status == 206:
        headers["Content-Range"] = content_range((start, end), entry.length)
    return StreamingResponse(
        _body(first, chunks), status_code=status, headers=headers, media_type=OCTET_STREAM
    )


__all__ = ["OCTET_STREAM", "OpenContent", "RangeNotSatisfiable", "content_response", "parse_range"]
