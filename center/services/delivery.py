"""Content stream v1 made on the fly for one order (DESIGN.md "Wire formats"; the patent's ST7, Ke[M]).

Never a stored ciphertext per order: the stream is computed from the item's plaintext blob with the order's
Ke and salt (sealed under the data key) and the device's AEAD, one segment at a time, in constant memory
(about 1 MiB out, one read chunk in), so any byte range is reproducible: a Range is widened to whole
segments, encrypted, and cut back to the bytes asked for. The bytes equal `protocol.stream.encrypt(plaintext,
Ke, aead=…, segment_size=…, salt=salt)` (tests/center/test_delivery.py checks that for every range shape).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from center.blobs import BlobStore
from center.db.commerce import OrderRow
from center.sealing import open_sealed
from protocol import stream

#: Sealed segments go out joined into chunks of about this size: the route streams a sync iterator, so each
#: chunk costs a thread-pool trip and an ASGI message (one per 64 KiB segment made the stream 0.74 of the
#: same server sending the plaintext blob in 1 MiB chunks).
OUT_CHUNK = 1 << 20


@dataclass(frozen=True)
class Delivery:
    order: OrderRow
    key: bytes
    header: stream.Header

    @property
    def length(self) -> int:
        return stream.ciphertext_length(self.order.content_length, self.order.segment_size)

    @classmethod
    def of(cls, order: OrderRow, data_key: bytes) -> Delivery:
        secret = open_sealed(data_key, order.sealed_secret, order.order_id.encode())
        key, salt = secret[:32], secret[32:]
        return cls(order, key, stream.Header(aead=order.aead, segment_size=order.segment_size, salt=salt))

    def chunks(self, blobs: BlobStore, start: int, end: int, out_chunk: int = OUT_CHUNK) -> Iterator[bytes]:
        """Stream bytes [start, end) (0 <= start < end <= length), in chunks of less than `out_chunk` plus one
        segment (memory: that, and one read chunk of the blob store)."""
        header = self.header.build()
        if start < stream.HEADER_SIZE:
            yield header[start : min(end, stream.HEADER_SIZE)]
        if end <= stream.HEADER_SIZE:
            return
        size, total = self.order.segment_size, self.order.content_length
        block = size + stream.TAG_SIZE
        count = max(1, -(-total // size))
        first = max(0, start - stream.HEADER_SIZE) // block
        last = min(count - 1, (end - 1 - stream.HEADER_SIZE) // block)
        plain = self._plaintext(blobs, first * size, min(total, (last + 1) * size))
        sealed_segments = stream.encrypt_segments(self.key, self.header, total, first, plain)
        batch: list[bytes] = []
        batched = 0
        for index, sealed in enumerate(sealed_segments, start=first):
            seg_start = stream.HEADER_SIZE + index * block
            lo, hi = max(start - seg_start, 0), min(end - seg_start, len(sealed))
            batch.append(sealed if lo == 0 and hi == len(sealed) else sealed[lo:hi])
            batched += hi - lo
            if batched >= out_chunk:
                yield batch[0] if len(batch) == 1 else b"".join(batch)
                batch, batched = [], 0
        if batch:
            yield batch[0] if len(batch) == 1 else b"".join(batch)

    def _plaintext(self, blobs: BlobStore, start: int, end: int) -> Iterator[bytes | memoryview]:
        """Plaintext segments of [start, end), which begins on a segment boundary."""
        size = self.order.segment_size
        pending = b""
        if end > start:
            for chunk in blobs.iter_chunks(self.order.blob_sha256, start, end):
                data = pending + chunk if pending else chunk
                whole = len(data) - len(data) % size
                view = memoryview(data)
                for offset in range(0, whole, size):
                    yield view[offset : offset + size]  # sealed from the buffer: no copy
                pending = data[whole:]
        if pending or end == start:
            yield pending
