"""Content stream v1: segmented AEAD, the STREAM construction as in age (DESIGN.md "Wire formats" → "Content
stream v1").

    stream    = header (42 bytes) || segment 0 || segment 1 || ...
    header    = "CFS1" | 0x01 | AEAD id (0x01 AES-256-GCM, 0x02 ChaCha20-Poly1305) | s (u32 BE) | salt (32)
    segment i = AEAD(HKDF-SHA256(K, salt, "coffer/stream/v1"), nonce = i (11 bytes BE) || last flag,
                plaintext[i*s : (i+1)*s], aad = header)

Every segment holds s plaintext bytes except the last, which holds 1..s (0 only when the whole plaintext is
empty). Memory stays constant: encryptors and decryptors hold at most one segment plus the chunk being pushed.

Decoding fails closed with one `StreamError` family (protocol.errors):
- `BadHeader`: a 42-byte header that is malformed: magic, version, AEAD id, or s outside 1 KiB..16 MiB.
  `SegmentTooLarge`: a valid s above the reader's `max_segment_size` (the device passes
  `DEVICE_MAX_SEGMENT_SIZE`).
- `Truncated`: the input ends before an authenticated last segment — inside the header, right after it, inside
  a segment's tag, or at a segment boundary (a full segment that authenticates as not-last ends the input).
- `TrailingData`: bytes follow an authenticated last segment, or an empty last segment follows a full one (the
  plaintext had already ended; an encoder never emits it).
- `AuthenticationFailed(segment=i)`: segment i does not open as segment i: a flipped bit, reordering, a
  truncation inside a segment, a wrong key (then i = 0). Not told apart, on purpose.
`Decryptor.update()` releases plaintext of segments that authenticated as not-last; only `finalize()` proves
the stream complete, so treat earlier output as provisional until then.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from protocol import _stream
from protocol._stream import HEADER_SIZE, TAG_SIZE, BytesLike
from protocol.errors import BadHeader, SegmentTooLarge, StreamError, TrailingData, Truncated

__all__ = [
    "AEADS",
    "DEFAULT_SEGMENT_SIZE",
    "DEVICE_MAX_SEGMENT_SIZE",
    "HEADER_SIZE",
    "MAX_SEGMENT_SIZE",
    "MIN_SEGMENT_SIZE",
    "TAG_SIZE",
    "Decryptor",
    "Encryptor",
    "Header",
    "ciphertext_length",
    "ciphertext_range",
    "decrypt",
    "decrypt_file",
    "decrypt_iter",
    "encrypt",
    "encrypt_file",
    "encrypt_iter",
    "encrypt_segments",
    "plaintext_length",
    "read_range",
]

AEADS: dict[str, int] = dict(_stream.AEAD_IDS)
DEFAULT_SEGMENT_SIZE = 65536
MIN_SEGMENT_SIZE = 1024
MAX_SEGMENT_SIZE = 16 * 1024 * 1024
DEVICE_MAX_SEGMENT_SIZE = 1024 * 1024

# A binary file object: typing's BinaryIO (open(..., "rb"), BytesIO) or an io base-class implementation.
BinaryFile = BinaryIO | io.RawIOBase | io.BufferedIOBase

_AEAD_NAMES = {ident: name for name, ident in AEADS.items()}


def _check_segment_size(segment_size: int) -> None:
    if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
        raise ValueError(f"segment size must be {MIN_SEGMENT_SIZE}..{MAX_SEGMENT_SIZE}, got {segment_size}")


def _check_max_segment_size(max_segment_size: int) -> None:
    if not MIN_SEGMENT_SIZE <= max_segment_size <= MAX_SEGMENT_SIZE:
        raise ValueError(f"max_segment_size must be {MIN_SEGMENT_SIZE}..{MAX_SEGMENT_SIZE}")


@dataclass(frozen=True)
class Header:
    """The 42-byte stream header: "CFS1" | version 0x01 | AEAD id | segment size (u32 BE) | salt (32)."""

    aead: str
    segment_size: int
    salt: bytes

    def __post_init__(self) -> None:
        if self.aead not in AEADS:
            raise ValueError(f"unknown AEAD {self.aead!r}; expected one of {sorted(AEADS)}")
        _check_segment_size(self.segment_size)
        if not isinstance(self.salt, bytes) or len(self.salt) != _stream.SALT_SIZE:
            raise ValueError(f"salt must be {_stream.SALT_SIZE} bytes")

    def build(self) -> bytes:
        return (
            _stream.MAGIC
            + bytes((_stream.VERSION, AEADS[self.aead]))
            + self.segment_size.to_bytes(4, "big")
            + self.salt
        )

    @classmethod
    def parse(cls, data: BytesLike, *, max_segment_size: int = MAX_SEGMENT_SIZE) -> Header:
        """Parse exactly 42 bytes: BadHeader if malformed, SegmentTooLarge if s > max_segment_size."""
        _check_max_segment_size(max_segment_size)
        data = bytes(data)
        if len(data) != HEADER_SIZE:
            raise BadHeader(f"header must be {HEADER_SIZE} bytes, got {len(data)}")
        if data[:4] != _stream.MAGIC:
            raise BadHeader("not a content stream (bad magic)")
        if data[4] != _stream.VERSION:
            raise BadHeader(f"unsupported content stream version {data[4]}")
        aead = _AEAD_NAMES.get(data[5])
        if aead is None:
            raise BadHeader(f"unknown AEAD id {data[5]}")
        segment_size = int.from_bytes(data[6:10], "big")
        if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
            raise BadHeader(f"segment size {segment_size} outside {MIN_SEGMENT_SIZE}..{MAX_SEGMENT_SIZE}")
        if segment_size > max_segment_size:
            raise SegmentTooLarge(
                f"segment size {segment_size} exceeds this reader's limit {max_segment_size}"
            )
        return cls(aead=aead, segment_size=segment_size, salt=data[10:])


def _salt(salt: BytesLike | None) -> bytes:
    return os.urandom(_stream.SALT_SIZE) if salt is None else bytes(salt)


def _segment_count(plaintext_length: int, segment_size: int) -> int:
    return max(1, -(-plaintext_length // segment_size))


def ciphertext_length(plaintext_length: int, segment_size: int) -> int:
    """Length of the whole stream (header included) for a plaintext of `plaintext_length` bytes."""
    _check_segment_size(segment_size)
    if plaintext_length < 0:
        raise ValueError("plaintext_length must be >= 0")
    return HEADER_SIZE + plaintext_length + TAG_SIZE * _segment_count(plaintext_length, segment_size)


def plaintext_length(ciphertext_length: int, segment_size: int) -> int:
    """Plaintext length of a whole stream of `ciphertext_length` bytes (header included).

    Truncated if no complete last segment fits; TrailingData if the length implies an empty segment after a
    full one. Only the length is judged: segments are not authenticated here.
    """
    _check_segment_size(segment_size)
    body = ciphertext_length - HEADER_SIZE
    if body < TAG_SIZE:
        raise Truncated("stream too short for a header and one segment")
    block = segment_size + TAG_SIZE
    count = -(-body // block)
    last = body - (count - 1) * block
    if last < TAG_SIZE:
        raise Truncated("stream length ends inside a segment's tag")
    if last == TAG_SIZE and count > 1:
        raise TrailingData("stream length implies an empty segment after a full one")
    return body - TAG_SIZE * count


def ciphertext_range(plain_start: int, plain_end_exclusive: int, segment_size: int) -> tuple[int, int, int]:
    """The whole segments covering plaintext bytes [plain_start, plain_end_exclusive).

    Returns (ct_start, ct_end_exclusive, first_segment_index) as offsets into the stream (header included).
    When the range reaches the stream's last segment, which may be short, ct_end_exclusive can exceed the
    stream's length: clip it to the length (as HTTP Range does).
    """
    _check_segment_size(segment_size)
    if not 0 <= plain_start < plain_end_exclusive:
        raise ValueError("need 0 <= plain_start < plain_end_exclusive")
    block = segment_size + TAG_SIZE
    first = plain_start // segment_size
    last = (plain_end_exclusive - 1) // segment_size
    return HEADER_SIZE + first * block, HEADER_SIZE + (last + 1) * block, first


class Encryptor:
    """Incremental encryption in constant memory: header, then every segment once the next byte is known."""

    def __init__(
        self,
        key: BytesLike,
        *,
        aead: str = "aes-256-gcm",
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        salt: BytesLike | None = None,
    ) -> None:
        key = _stream.check_key(key)
        self.header = Header(aead=aead, segment_size=segment_size, salt=_salt(salt))
        self._header_bytes: bytes | None = self.header.build()
        self._cipher = _stream.SegmentCipher(aead, key, self._header_bytes)
        self._segments = _stream.Segmenter(segment_size)
        self._index = 0
        self._done = False

    def update(self, data: BytesLike) -> bytes:
        """The header (first call) and every segment now known not to be the last; holds back >= 1 byte."""
        parts = list(self._seal(data))
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def update_into(self, data: BytesLike, out: bytearray | memoryview) -> int:
        """Like `update`, but writes the output to the start of `out` (no bytes object per segment, no join);
        returns its length. `out` needs room for `len(data) + segment_size + TAG_SIZE * (len(data) //
        segment_size + 1) + HEADER_SIZE` bytes; ValueError (before any input is taken) if it is too small."""
        self._check_open()
        mv = memoryview(data).cast("B")
        view = memoryview(out).cast("B")
        size = self.header.segment_size
        count = (self._segments.pending + len(mv) - 1) // size if mv else 0
        head = len(self._header_bytes) if self._header_bytes is not None else 0
        if len(view) < head + count * (size + TAG_SIZE):
            raise ValueError("output buffer too small")
        n = 0
        if self._header_bytes is not None:
            view[:head] = self._header_bytes
            self._header_bytes = None
            n = head
        seal_into = self._cipher.seal_into
        for block in self._segments.push(mv, borrow=type(data) is bytes):
            n += seal_into(self._index, False, block, view[n:])
            self._index += 1
        return n

    def finalize(self) -> bytes:
        """The last segment (and the header if not yet sent); an empty plaintext gives one empty segment."""
        self._check_open()
        self._done = True
        last = self._cipher.seal(self._index, True, self._segments.held())
        header, self._header_bytes = self._header_bytes, None
        return last if header is None else header + last

    def _seal(self, data: BytesLike) -> Iterator[bytes]:
        """The header (first call) and the segments `data` completes, one bytes object each, lazily."""
        self._check_open()
        borrow, mv = type(data) is bytes, memoryview(data).cast("B")
        if self._header_bytes is not None:
            yield self._header_bytes
            self._header_bytes = None
        seal = self._cipher.seal
        for block in self._segments.push(mv, borrow=borrow):
            yield seal(self._index, False, block)
            self._index += 1

    def _check_open(self) -> None:
        if self._done:
            raise ValueError("Encryptor already finalized")


class Decryptor:
    """Incremental decryption in constant memory: one held-back segment plus the chunk being pushed."""

    def __init__(self, key: BytesLike, *, max_segment_size: int = MAX_SEGMENT_SIZE) -> None:
        _check_max_segment_size(max_segment_size)
        self._key = _stream.check_key(key)
        self._max_segment_size = max_segment_size
        self.header: Header | None = None
        self._head = bytearray()
        self._cipher: _stream.SegmentCipher | None = None
        self._segments: _stream.Segmenter | None = None
        self._index = 0
        self._done = False

    def update(self, data: BytesLike) -> bytes:
        """Plaintext of every segment that authenticated and that more input follows (so is not the last)."""
        parts = list(self._open(data))
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def update_into(self, data: BytesLike, out: bytearray | memoryview) -> int:
        """Like `update`, but writes the plaintext to the start of `out` (decrypted in place: no bytes object
        per segment, no join); returns its length. `out` needs room for `len(data) + segment_size` bytes
        (with s = `max_segment_size` before the header is known); ValueError (before any input is taken) if it
        is too small."""
        self._check_open()
        mv = memoryview(data).cast("B")
        view = memoryview(out).cast("B")
        if self._segments is None:
            if len(view) < len(mv) + self._max_segment_size:
                raise ValueError("output buffer too small")
            mv = self._take_header(mv)
        if self._cipher is None or self._segments is None or self.header is None:
            return 0
        block_size = self.header.segment_size + TAG_SIZE
        count = (self._segments.pending + len(mv) - 1) // block_size if mv else 0
        if len(view) < count * self.header.segment_size:
            raise ValueError("output buffer too small")
        open_into = self._cipher.open_segment_into
        n = 0
        try:
            for block in self._segments.push(mv, borrow=type(data) is bytes):
                n += open_into(self._index, block, False, block_size, view[n:])
                self._index += 1
        except StreamError:
            self._done = True
            raise
        return n

    def finalize(self) -> bytes:
        """The last segment's plaintext; else Truncated, TrailingData or AuthenticationFailed(segment=i)."""
        self._check_open()
        self._done = True
        if self._cipher is None or self._segments is None or self.header is None:
            raise Truncated("input ends inside the header")
        held = self._segments.held()
        return self._cipher.open_segment(self._index, held, True, self.header.segment_size + TAG_SIZE)

    def _open(self, data: BytesLike) -> Iterator[bytes]:
        """Plaintext of each segment `data` completes and proves not-last, one bytes object each, lazily."""
        self._check_open()
        borrow, mv = type(data) is bytes, memoryview(data).cast("B")
        if self._segments is None:
            mv = self._take_header(mv)
        if self._cipher is None or self._segments is None or self.header is None:
            return
        open_segment, block_size = self._cipher.open_segment, self.header.segment_size + TAG_SIZE
        try:
            for block in self._segments.push(mv, borrow=borrow):
                yield open_segment(self._index, block, False, block_size)
                self._index += 1
        except StreamError:
            self._done = True
            raise

    def _take_header(self, mv: memoryview) -> memoryview:
        """Collect the 42 header bytes; once complete, parse them and return the rest of `mv`."""
        need = HEADER_SIZE - len(self._head)
        self._head += mv[:need]
        if len(self._head) < HEADER_SIZE:
            return mv[:0]
        try:
            self.header = Header.parse(self._head, max_segment_size=self._max_segment_size)
        except StreamError:
            self._done = True
            raise
        self._cipher = _stream.SegmentCipher(self.header.aead, self._key, bytes(self._head))
        self._segments = _stream.Segmenter(self.header.segment_size + TAG_SIZE)
        return mv[need:]

    def _check_open(self) -> None:
        if self._done:
            raise ValueError("Decryptor already finalized or failed")


def encrypt_iter(
    chunks: Iterable[BytesLike],
    key: BytesLike,
    *,
    aead: str = "aes-256-gcm",
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    salt: BytesLike | None = None,
) -> Iterator[bytes]:
    """Encrypt an iterable of plaintext chunks; yields the header, then one bytes object per segment."""
    enc = Encryptor(key, aead=aead, segment_size=segment_size, salt=salt)
    for chunk in chunks:
        yield from enc._seal(chunk)
    yield enc.finalize()


def encrypt_segments(
    key: BytesLike, header: Header, plaintext_length: int, first: int, blocks: Iterable[BytesLike]
) -> Iterator[bytes]:
    """Segments `first`, `first + 1`, … of the stream with `header` over a plaintext of `plaintext_length`
    bytes, one sealed segment per block of that plaintext given (segment i's block is plaintext[i*s :
    (i+1)*s]), so any run of segments can be made without the ones before it (a server answering a Range).

    Each block's length is checked against its index (ValueError, before sealing it), and the stream's last
    segment gets the last flag. Joined after `header.build()` from segment 0 on, the output equals
    `encrypt(plaintext, key, aead=header.aead, segment_size=header.segment_size, salt=header.salt)`.
    """
    key = _stream.check_key(key)
    if plaintext_length < 0:
        raise ValueError("plaintext_length must be >= 0")
    size = header.segment_size
    count = _segment_count(plaintext_length, size)
    if not 0 <= first < count:
        raise ValueError(f"segment {first} is outside the stream's {count} segments")
    cipher = _stream.SegmentCipher(header.aead, key, header.build())
    for index, block in enumerate(blocks, start=first):
        if index >= count:
            raise ValueError(f"segment {index} is outside the stream's {count} segments")
        last = index == count - 1
        expected = plaintext_length - index * size if last else size
        if len(block) != expected:
            raise ValueError(f"segment {index} needs {expected} plaintext bytes, got {len(block)}")
        yield cipher.seal(index, last, block)


def decrypt_iter(
    chunks: Iterable[BytesLike], key: BytesLike, *, max_segment_size: int = MAX_SEGMENT_SIZE
) -> Iterator[bytes]:
    """Decrypt an iterable of ciphertext chunks; yields each segment's plaintext (empty ones skipped).

    Output before the final segment is provisional: the generator raises at the end if the stream is
    incomplete.
    """
    dec = Decryptor(key, max_segment_size=max_segment_size)
    for chunk in chunks:
        yield from dec._open(chunk)
    last = dec.finalize()
    if last:
        yield last


def encrypt(
    plaintext: BytesLike,
    key: BytesLike,
    *,
    aead: str = "aes-256-gcm",
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    salt: BytesLike | None = None,
) -> bytes:
    """Encrypt a whole plaintext held in memory (salt None: a fresh random salt)."""
    return b"".join(encrypt_iter((plaintext,), key, aead=aead, segment_size=segment_size, salt=salt))


def decrypt(data: BytesLike, key: BytesLike, *, max_segment_size: int = MAX_SEGMENT_SIZE) -> bytes:
    """Decrypt and verify a whole stream held in memory."""
    return b"".join(decrypt_iter((data,), key, max_segment_size=max_segment_size))


def encrypt_file(
    src: BinaryFile,
    dst: BinaryFile,
    key: BytesLike,
    *,
    aead: str = "aes-256-gcm",
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    salt: BytesLike | None = None,
) -> int:
    """Encrypt `src` (read to its end) into `dst`; returns the bytes written. Two reused segment buffers."""
    key = _stream.check_key(key)
    header = Header(aead=aead, segment_size=segment_size, salt=_salt(salt))
    head = header.build()
    cipher = _stream.SegmentCipher(aead, key, head)
    _stream.write_all(dst.write, memoryview(head))
    written = len(head)
    out = memoryview(bytearray(segment_size + TAG_SIZE))
    for index, (block, final) in enumerate(_stream.read_blocks(_stream.reader(src), segment_size)):
        n = cipher.seal_into(index, final, block, out)
        _stream.write_all(dst.write, out[:n])
        written += n
    return written


def decrypt_file(
    src: BinaryFile, dst: BinaryFile, key: BytesLike, *, max_segment_size: int = MAX_SEGMENT_SIZE
) -> int:
    """Decrypt and verify `src` (read to its end) into `dst`; returns the plaintext bytes written.

    Plaintext is written segment by segment as it authenticates; on a StreamError, `dst` holds a prefix that
    must be discarded. Two segment-sized buffers, reused.
    """
    _check_max_segment_size(max_segment_size)
    key = _stream.check_key(key)
    readinto = _stream.reader(src)
    header, cipher = _read_header(readinto, key, max_segment_size)
    block_size = header.segment_size + TAG_SIZE
    out = memoryview(bytearray(header.segment_size))
    written = 0
    for index, (block, final) in enumerate(_stream.read_blocks(readinto, block_size)):
        n = cipher.open_segment_into(index, block, final, block_size, out)
        _stream.write_all(dst.write, out[:n])
        written += n
    return written


def _read_header(
    readinto: _stream.ReadInto, key: bytes, max_segment_size: int
) -> tuple[Header, _stream.SegmentCipher]:
    head = bytearray(HEADER_SIZE)
    if _stream.read_full(readinto, memoryview(head)) < HEADER_SIZE:
        raise Truncated("input ends inside the header")
    header = Header.parse(head, max_segment_size=max_segment_size)
    return header, _stream.SegmentCipher(header.aead, key, bytes(head))


def read_range(
    src: BinaryFile, key: BytesLike, start: int, length: int, *, max_segment_size: int = MAX_SEGMENT_SIZE
) -> Iterator[bytes]:
    """Plaintext bytes [start, start + length) of a complete stream in a seekable file, verifying every
    segment it touches, with each segment's last flag taken from the stream's total length.

    The header, the stream's length and the range are checked at once (ValueError if the range falls outside
    the plaintext); segments are read and verified as the iterator advances. A wrong key or tampering fails
    as AuthenticationFailed of the first segment touched. Moves `src`'s position.
    """
    _check_max_segment_size(max_segment_size)
    key = _stream.check_key(key)
    if start < 0 or length < 0:
        raise ValueError("start and length must be >= 0")
    src.seek(0)
    header, cipher = _read_header(_stream.reader(src), key, max_segment_size)
    total = src.seek(0, io.SEEK_END)
    plain_total = plaintext_length(total, header.segment_size)
    if start + length > plain_total:
        raise ValueError(f"range [{start}, {start + length}) outside the plaintext's {plain_total} bytes")
    if length == 0:
        return iter(())
    final_index = _segment_count(plain_total, header.segment_size) - 1
    return _read_segments(src, cipher, header.segment_size, total, final_index, start, start + length)


def _read_segments(
    src: BinaryFile,
    cipher: _stream.SegmentCipher,
    segment_size: int,
    total: int,
    final_index: int,
    start: int,
    end: int,
) -> Iterator[bytes]:
    ct_start, _, first = ciphertext_range(start, end, segment_size)
    block_size = segment_size + TAG_SIZE
    last = (end - 1) // segment_size
    buf = memoryview(bytearray(block_size))
    readinto = _stream.reader(src)
    src.seek(ct_start)
    for index in range(first, last + 1):
        final = index == final_index
        size = total - HEADER_SIZE - index * block_size if final else block_size
        block = buf[:size]
        if _stream.read_full(readinto, block) < size:
            raise Truncated("stream shrank while being read")
        plaintext = cipher.open_segment(index, block, final, block_size)
        lo = start - index * segment_size if index == first else 0
        hi = end - index * segment_size if index == last else len(plaintext)
        yield plaintext if lo == 0 and hi == len(plaintext) else plaintext[lo:hi]
