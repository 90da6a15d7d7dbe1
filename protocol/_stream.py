"""Content stream v1 primitives (DESIGN.md "Wire formats" → "Content stream v1"); use protocol.stream.

Here: the segment key (HKDF-SHA256), the nonce (i as 11-byte big-endian || last flag), one segment's AEAD with
the 42-byte header as aad, the decoder's error policy for one segment, and two ways of cutting bytes into
segment-sized blocks without copying more than needed: push (`Segmenter`, for `update()`) and pull
(`read_blocks`, for file objects). Both hold back the final block until the input's end is known, because the
last segment is flagged in its nonce.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from protocol.errors import AuthenticationFailed, StreamError, TrailingData, Truncated

BytesLike = bytes | bytearray | memoryview
ReadInto = Callable[[memoryview], "int | None"]

MAGIC = b"CFS1"
VERSION = 1
HEADER_SIZE = 42
TAG_SIZE = 16
KEY_SIZE = 32
SALT_SIZE = 32
KDF_INFO = b"coffer/stream/v1"
AEAD_IDS: dict[str, int] = {"aes-256-gcm": 1, "chacha20-poly1305": 2}

_NONCE_FLAGS = (b"\x00", b"\x01")


def check_key(key: BytesLike) -> bytes:
    """The content key K must be exactly 32 bytes; anything else is a programming error (ValueError)."""
    if not isinstance(key, bytes | bytearray | memoryview):
        raise TypeError("key must be bytes")
    key = bytes(key)
    if len(key) != KEY_SIZE:
        raise ValueError(f"content stream v1 key must be {KEY_SIZE} bytes, got {len(key)}")
    return key


def segment_key(key: bytes, salt: bytes) -> bytes:
    """Segment key = HKDF-SHA256(ikm = K, salt = salt, info = "coffer/stream/v1", length 32)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=KDF_INFO).derive(key)


def nonce(index: int, last: bool) -> bytes:
    """Nonce of segment `index`: the index as 11 bytes big-endian, then 0x01 if last else 0x00."""
    return index.to_bytes(11, "big") + _NONCE_FLAGS[last]


class SegmentCipher:
    """One stream's AEAD: the derived segment key, bound to the stream's header (the aad of every segment)."""

    def __init__(self, aead: str, key: bytes, header: bytes) -> None:
        skey = segment_key(key, header[HEADER_SIZE - SALT_SIZE :])
        self._aead: AESGCM | ChaCha20Poly1305 = (
            AESGCM(skey) if aead == "aes-256-gcm" else ChaCha20Poly1305(skey)
        )
        self._aad = bytes(header)

    def seal(self, index: int, last: bool, plaintext: BytesLike) -> bytes:
        return self._aead.encrypt(nonce(index, last), plaintext, self._aad)

    def seal_into(self, index: int, last: bool, plaintext: memoryview, out: memoryview) -> int:
        """Like `seal`, writing the segment to the start of `out`; returns its length."""
        size = len(plaintext) + TAG_SIZE
        return self._aead.encrypt_into(nonce(index, last), plaintext, self._aad, out[:size])

    def open(self, index: int, last: bool, segment: BytesLike) -> bytes | None:
        """The plaintext, or None if the segment does not authenticate as segment `index` with this flag."""
        try:
            return self._aead.decrypt(nonce(index, last), segment, self._aad)
        except InvalidTag:
            return None

    def open_segment(self, index: int, segment: memoryview, final: bool, block_size: int) -> bytes:
        """The plaintext of block `index`, judged by the decoding rules (`verdict`)."""
        if final and len(segment) < TAG_SIZE:
            raise Truncated("input ends inside a segment")
        try:
            plaintext = self._aead.decrypt(nonce(index, final), segment, self._aad)
        except InvalidTag:
            raise self.verdict(index, segment, final, block_size) from None
        if final and index > 0 and not plaintext:
            raise TrailingData(f"empty last segment {index} after a full segment")
        return plaintext

    def open_segment_into(
        self, index: int, segment: memoryview, final: bool, block_size: int, out: memoryview
    ) -> int:
        """Like `open_segment`, writing the plaintext to the start of `out`; returns its length."""
        if final and len(segment) < TAG_SIZE:
            raise Truncated("input ends inside a segment")
        size = len(segment) - TAG_SIZE
        try:
            self._aead.decrypt_into(nonce(index, final), segment, self._aad, out[:size])
        except InvalidTag:
            raise self.verdict(index, segment, final, block_size) from None
        if final and index > 0 and not size:
            raise TrailingData(f"empty last segment {index} after a full segment")
        return size

    def verdict(self, index: int, segment: memoryview, final: bool, block_size: int) -> StreamError:
        """The error for block `index` (at least a tag long) that failed to open with its expected flag.

        Decoding rules: a block is `final` when no byte follows it (the decoder holds back one block to know);
        non-final blocks are always full (`block_size` = s + 16). Then:
        - a full final block that opens as not-last: Truncated (the input was cut at a segment boundary);
        - a non-final block that opens as last: TrailingData (bytes follow the authenticated last segment);
        - otherwise AuthenticationFailed(index): tampering, reordering, a wrong key (segment 0).
        Also (in `open_segment`): a final block shorter than a tag is Truncated, and an authentic empty last
        segment after segment 0 is TrailingData (the plaintext already ended with the full one before it).
        """
        if len(segment) == block_size and self.open(index, not final, segment) is not None:
            if final:
                return Truncated("input ends before the last segment")
            return TrailingData(f"bytes follow the last segment (segment {index})")
        return AuthenticationFailed(index)


class Segmenter:
    """Cuts pushed bytes into blocks of `size` bytes, always holding back the last 1..size bytes.

    A block is handed out only once a byte after it has arrived, so every block `push()` yields is not the
    stream's last, and `held()` is the final block when the input ends. Blocks are slices of the input when it
    lies whole in one chunk, else assembled in one reusable buffer (allocated on first need); the tail of an
    immutable `bytes` chunk is kept by reference, not copied. A yielded view is valid only until the generator
    resumes.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._view: memoryview | None = None  # the assembly buffer, allocated when first needed
        self._fill = 0
        self._borrowed: memoryview | None = None

    def _buffer(self) -> memoryview:
        if self._view is None:
            self._view = memoryview(bytearray(self._size))
        return self._view

    def push(self, mv: memoryview, *, borrow: bool) -> Iterator[memoryview]:
        """Yield every complete block that more input follows. `mv`: a byte view of the input; `borrow`: the
        input is immutable (`bytes`), so its tail may be kept by reference instead of copied."""
        if not mv:
            return
        size = self._size
        borrowed = self._borrowed
        if borrowed is not None:
            self._borrowed = None
            if len(borrowed) == size:
                yield borrowed
            else:
                self._fill = len(borrowed)
                self._buffer()[: self._fill] = borrowed
        if self._fill:
            buf = self._buffer()
            take = min(size - self._fill, len(mv))
            buf[self._fill : self._fill + take] = mv[:take]
            self._fill += take
            mv = mv[take:]
            if not mv:
                return
            self._fill = 0
            yield buf
        while len(mv) > size:
            yield mv[:size]
            mv = mv[size:]
        if borrow:
            self._borrowed = mv
        else:
            self._fill = len(mv)
            self._buffer()[: self._fill] = mv

    @property
    def pending(self) -> int:
        """How many bytes are held back (0..size)."""
        return len(self._borrowed) if self._borrowed is not None else self._fill

    def held(self) -> memoryview:
        """The held-back bytes (0..size): the final block once the input has ended."""
        if self._borrowed is not None:
            return self._borrowed
        return self._buffer()[: self._fill] if self._fill else memoryview(b"")


def reader(src: object) -> ReadInto:
    """`src.readinto`, or an adapter over `src.read(n)` for file objects without it."""
    readinto = getattr(src, "readinto", None)
    if readinto is not None:
        return readinto  # type: ignore[no-any-return]
    read = src.read  # type: ignore[attr-defined]

    def read_via_read(view: memoryview) -> int:
        chunk = read(len(view))
        view[: len(chunk)] = chunk
        return len(chunk)

    return read_via_read


def read_full(readinto: ReadInto, view: memoryview) -> int:
    """Fill `view` from a blocking source, short only at end of input; returns the bytes read."""
    filled = 0
    while filled < len(view):
        got = readinto(view[filled:])
        if not got:
            break
        filled += got
    return filled


def read_blocks(readinto: ReadInto, size: int) -> Iterator[tuple[memoryview, bool]]:
    """Pull blocks of `size` bytes as (view, final): one reused buffer plus a one-byte look-ahead.

    Non-final blocks are full; the final one has 0..size bytes. A yielded view is valid until the generator
    resumes.
    """
    buf = bytearray(size)
    view = memoryview(buf)
    peek = bytearray(1)
    peek_view = memoryview(peek)
    start = 0
    while True:
        filled = start + read_full(readinto, view[start:])
        if filled < size or not read_full(readinto, peek_view):
            yield view[:filled], True
            return
        yield view, False
        buf[0] = peek[0]
        start = 1


def write_all(write: Callable[[memoryview], int | None], data: memoryview) -> None:
    """Write all of `data`, also to raw file objects whose write() may be partial."""
    while data:
        written = write(data)
        if written is None or written >= len(data):
            return
        data = data[written:]
