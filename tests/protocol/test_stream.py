"""protocol.stream: content stream v1 (DESIGN.md "Wire formats" → "Content stream v1") — API behaviour."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from protocol import errors, stream
from protocol.stream import (
    HEADER_SIZE,
    TAG_SIZE,
    Decryptor,
    Encryptor,
    Header,
    ciphertext_length,
    ciphertext_range,
    plaintext_length,
    read_range,
)

KEY = bytes(range(32))
SALT = bytes(range(100, 132))
S = 1024


def ct_of(plaintext: bytes, *, segment_size: int = S, aead: str = "aes-256-gcm", key: bytes = KEY) -> bytes:
    return stream.encrypt(plaintext, key, aead=aead, segment_size=segment_size, salt=SALT)


def pattern(n: int) -> bytes:
    return (bytes(range(251)) * (n // 251 + 1))[:n]


def segment_offsets(index: int, segment_size: int = S) -> tuple[int, int]:
    start = HEADER_SIZE + index * (segment_size + TAG_SIZE)
    return start, start + segment_size + TAG_SIZE


# --- constants and header


def test_constants_are_the_contract() -> None:
    assert stream.AEADS == {"aes-256-gcm": 1, "chacha20-poly1305": 2}
    assert stream.DEFAULT_SEGMENT_SIZE == 65536
    assert stream.MIN_SEGMENT_SIZE == 1024
    assert stream.MAX_SEGMENT_SIZE == 16 * 1024 * 1024
    assert stream.DEVICE_MAX_SEGMENT_SIZE == 1024 * 1024
    assert (HEADER_SIZE, TAG_SIZE) == (42, 16)


def test_header_layout_is_byte_exact() -> None:
    built = Header(aead="chacha20-poly1305", segment_size=65536, salt=SALT).build()
    assert built == b"CFS1" + b"\x01" + b"\x02" + b"\x00\x01\x00\x00" + SALT
    assert Header.parse(built) == Header(aead="chacha20-poly1305", segment_size=65536, salt=SALT)
    assert Header.parse(memoryview(built)).segment_size == 65536


@pytest.mark.parametrize(
    "data",
    [
        b"",
        Header("aes-256-gcm", S, SALT).build()[:41],
        Header("aes-256-gcm", S, SALT).build() + b"\x00",
        b"CFS0" + Header("aes-256-gcm", S, SALT).build()[4:],
        b"CFS1\x02" + Header("aes-256-gcm", S, SALT).build()[5:],
        b"CFS1\x01\x09" + Header("aes-256-gcm", S, SALT).build()[6:],
        b"CFS1\x01\x01" + (1023).to_bytes(4, "big") + SALT,
        b"CFS1\x01\x01" + (16 * 1024 * 1024 + 1).to_bytes(4, "big") + SALT,
        b"CFS1\x01\x01" + (2**32 - 1).to_bytes(4, "big") + SALT,
    ],
    ids=["empty", "short", "long", "magic", "version", "aead", "s-small", "s-large", "s-huge"],
)
def test_header_parse_rejects_malformed(data: bytes) -> None:
    with pytest.raises(errors.BadHeader):
        Header.parse(data)


def test_header_parse_enforces_the_readers_limit() -> None:
    at_limit = Header("aes-256-gcm", stream.DEVICE_MAX_SEGMENT_SIZE, SALT).build()
    over = Header("aes-256-gcm", stream.DEVICE_MAX_SEGMENT_SIZE + 1, SALT).build()
    assert Header.parse(at_limit, max_segment_size=stream.DEVICE_MAX_SEGMENT_SIZE).segment_size == 1024 * 1024
    with pytest.raises(errors.SegmentTooLarge):
        Header.parse(over, max_segment_size=stream.DEVICE_MAX_SEGMENT_SIZE)
    assert Header.parse(over).segment_size == 1024 * 1024 + 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"aead": "aes-128-gcm", "segment_size": S, "salt": SALT},
        {"aead": "aes-256-gcm", "segment_size": 1023, "salt": SALT},
        {"aead": "aes-256-gcm", "segment_size": 16 * 1024 * 1024 + 1, "salt": SALT},
        {"aead": "aes-256-gcm", "segment_size": S, "salt": SALT[:31]},
    ],
)
def test_header_refuses_invalid_fields(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"."):
        Header(**kwargs)


@pytest.mark.parametrize("bad", [0, 1023, 16 * 1024 * 1024 + 1])
def test_max_segment_size_must_be_legal(bad: int) -> None:
    with pytest.raises(ValueError, match="max_segment_size"):
        Decryptor(KEY, max_segment_size=bad)
    with pytest.raises(ValueError, match="max_segment_size"):
        Header.parse(Header("aes-256-gcm", S, SALT).build(), max_segment_size=bad)


# --- keys


@pytest.mark.parametrize("key", [b"", bytes(31), bytes(33), bytes(64)])
def test_key_must_be_32_bytes(key: bytes) -> None:
    ct = ct_of(b"x")
    calls: list[Callable[[], object]] = [
        lambda: Encryptor(key),
        lambda: Decryptor(key),
        lambda: stream.encrypt(b"x", key),
        lambda: stream.decrypt(ct, key),
        lambda: stream.encrypt_file(io.BytesIO(b"x"), io.BytesIO(), key),
        lambda: stream.decrypt_file(io.BytesIO(ct), io.BytesIO(), key),
        lambda: read_range(io.BytesIO(ct), key, 0, 1),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="32 bytes"):
            call()


def test_key_must_be_bytes() -> None:
    with pytest.raises(TypeError):
        Encryptor("k" * 32)  # type: ignore[arg-type]


def test_key_may_be_bytes_like() -> None:
    ct = stream.encrypt(b"abc", bytearray(KEY), salt=SALT)
    assert stream.decrypt(ct, memoryview(KEY)) == b"abc"


# --- lengths and ranges


@pytest.mark.parametrize(
    ("plain", "segments"), [(0, 1), (1, 1), (S - 1, 1), (S, 1), (S + 1, 2), (2 * S, 2), (2 * S + 1, 3)]
)
def test_lengths_round_trip_and_match_real_streams(plain: int, segments: int) -> None:
    total = HEADER_SIZE + plain + TAG_SIZE * segments
    assert ciphertext_length(plain, S) == total
    assert plaintext_length(total, S) == plain
    assert len(ct_of(pattern(plain))) == total


@pytest.mark.parametrize(
    ("total", "error"),
    [
        (0, errors.Truncated),
        (HEADER_SIZE, errors.Truncated),
        (HEADER_SIZE + 15, errors.Truncated),
        (HEADER_SIZE + S + TAG_SIZE + 15, errors.Truncated),
        (HEADER_SIZE + S + TAG_SIZE + 16, errors.TrailingData),
    ],
)
def test_plaintext_length_of_impossible_lengths(total: int, error: type[Exception]) -> None:
    with pytest.raises(error):
        plaintext_length(total, S)


def test_length_functions_check_arguments() -> None:
    with pytest.raises(ValueError, match="segment size"):
        ciphertext_length(10, 1000)
    with pytest.raises(ValueError, match=">= 0"):
        ciphertext_length(-1, S)
    with pytest.raises(ValueError, match="segment size"):
        plaintext_length(100, 2**30)


def test_ciphertext_range_maps_to_whole_segments() -> None:
    block = S + TAG_SIZE
    assert ciphertext_range(0, 1, S) == (HEADER_SIZE, HEADER_SIZE + block, 0)
    assert ciphertext_range(0, S, S) == (HEADER_SIZE, HEADER_SIZE + block, 0)
    assert ciphertext_range(S - 1, S + 1, S) == (HEADER_SIZE, HEADER_SIZE + 2 * block, 0)
    assert ciphertext_range(S, S + 1, S) == (HEADER_SIZE + block, HEADER_SIZE + 2 * block, 1)
    assert ciphertext_range(5 * S + 7, 9 * S, S) == (HEADER_SIZE + 5 * block, HEADER_SIZE + 9 * block, 5)


def test_ciphertext_range_covers_exactly_the_needed_bytes() -> None:
    """A copy holding only the header and [ct_start, ct_end) (as after an HTTP Range fetch into a sparse file)
    serves the plaintext range; wiping the first or last byte of that span breaks it."""
    plaintext = pattern(3 * S + 100)
    ct = ct_of(plaintext)
    for start, end in [(0, 1), (S - 1, S + 1), (2 * S, 3 * S), (3 * S + 5, 3 * S + 100), (1, 3 * S + 100)]:
        ct_start, ct_end, first = ciphertext_range(start, end, S)
        assert first == start // S
        ct_end = min(ct_end, len(ct))
        sparse = bytearray(len(ct))
        sparse[:HEADER_SIZE] = ct[:HEADER_SIZE]
        sparse[ct_start:ct_end] = ct[ct_start:ct_end]
        assert (
            b"".join(read_range(io.BytesIO(bytes(sparse)), KEY, start, end - start)) == plaintext[start:end]
        )
        for wiped in (ct_start, ct_end - 1):
            broken = bytearray(sparse)
            broken[wiped] ^= 0xFF
            with pytest.raises(errors.AuthenticationFailed):
                b"".join(read_range(io.BytesIO(bytes(broken)), KEY, start, end - start))


@pytest.mark.parametrize(("start", "end"), [(0, 0), (5, 5), (6, 5), (-1, 3)])
def test_ciphertext_range_rejects_empty_or_negative(start: int, end: int) -> None:
    with pytest.raises(ValueError, match="plain_start"):
        ciphertext_range(start, end, S)


# --- Encryptor


def test_encryptor_holds_back_until_the_next_byte() -> None:
    enc = Encryptor(KEY, segment_size=S, salt=SALT)
    first = enc.update(pattern(S))
    assert first == enc.header.build()  # the full segment may be the last one: held back
    second = enc.update(b"\xff")
    assert len(second) == S + TAG_SIZE
    last = enc.finalize()
    assert len(last) == 1 + TAG_SIZE
    assert first + second + last == ct_of(pattern(S) + b"\xff")


def test_encryptor_emits_the_header_even_for_empty_updates() -> None:
    enc = Encryptor(KEY, segment_size=S, salt=SALT)
    assert enc.update(b"") == enc.header.build()
    assert enc.update(b"") == b""
    assert enc.finalize() == ct_of(b"")[HEADER_SIZE:]


def test_empty_plaintext_is_one_empty_last_segment() -> None:
    enc = Encryptor(KEY, segment_size=S, salt=SALT)
    ct = enc.finalize()
    assert len(ct) == HEADER_SIZE + TAG_SIZE
    assert ct == ct_of(b"")
    assert stream.decrypt(ct, KEY) == b""


def test_multiple_of_s_ends_with_a_full_last_segment() -> None:
    ct = ct_of(pattern(2 * S))
    assert len(ct) == HEADER_SIZE + 2 * (S + TAG_SIZE)


def test_random_salt_by_default() -> None:
    a, b = Encryptor(KEY), Encryptor(KEY)
    assert a.header.salt != b.header.salt
    assert len(a.header.salt) == 32
    assert a.header.segment_size == stream.DEFAULT_SEGMENT_SIZE
    assert a.header.aead == "aes-256-gcm"
    assert stream.encrypt(b"same", KEY) != stream.encrypt(b"same", KEY)


def test_aeads_differ_and_header_names_them() -> None:
    aes, chacha = ct_of(b"hello", aead="aes-256-gcm"), ct_of(b"hello", aead="chacha20-poly1305")
    assert aes[5] == 1
    assert chacha[5] == 2
    assert aes[HEADER_SIZE:] != chacha[HEADER_SIZE:]
    assert stream.decrypt(chacha, KEY) == b"hello"


def test_encryptor_copies_mutable_input() -> None:
    """A bytearray the caller reuses after update() must not change what was encrypted."""
    buf = bytearray(pattern(S + 10))
    enc = Encryptor(KEY, segment_size=S, salt=SALT)
    out = enc.update(buf)
    buf[:] = bytes(len(buf))
    out += enc.update(memoryview(bytearray(b"tail")))
    out += enc.finalize()
    assert stream.decrypt(out, KEY) == pattern(S + 10) + b"tail"


def test_encryptor_bad_input_does_not_lose_the_header() -> None:
    enc = Encryptor(KEY, segment_size=S, salt=bytearray(SALT))
    with pytest.raises(TypeError):
        enc.update("text")  # type: ignore[arg-type]
    assert enc.update(b"abc") + enc.finalize() == ct_of(b"abc")


def test_encryptor_refuses_use_after_finalize() -> None:
    enc = Encryptor(KEY, segment_size=S)
    enc.finalize()
    with pytest.raises(ValueError, match="finalized"):
        enc.update(b"x")
    with pytest.raises(ValueError, match="finalized"):
        enc.finalize()


def test_encryptor_accepts_non_byte_memoryviews() -> None:
    import array

    words = array.array("I", range(600))  # 2400 bytes
    enc = Encryptor(KEY, segment_size=S, salt=SALT)
    ct = enc.update(memoryview(words)) + enc.finalize()
    assert stream.decrypt(ct, KEY) == words.tobytes()


# --- Decryptor


def test_decryptor_releases_a_segment_only_when_more_input_follows() -> None:
    plaintext = pattern(2 * S + 5)
    ct = ct_of(plaintext)
    dec = Decryptor(KEY)
    assert dec.header is None
    assert dec.update(ct[:41]) == b""
    assert dec.header is None
    assert dec.update(ct[41 : HEADER_SIZE + S + TAG_SIZE]) == b""
    assert dec.header == Header("aes-256-gcm", S, SALT)
    assert dec.update(ct[HEADER_SIZE + S + TAG_SIZE : HEADER_SIZE + S + TAG_SIZE + 1]) == plaintext[:S]
    assert dec.update(ct[HEADER_SIZE + S + TAG_SIZE + 1 :]) == plaintext[S : 2 * S]
    assert dec.finalize() == plaintext[2 * S :]


def test_decryptor_refuses_a_large_segment_at_once() -> None:
    ct = stream.encrypt(b"x", KEY, segment_size=2 * 1024 * 1024, salt=SALT)
    dec = Decryptor(KEY, max_segment_size=stream.DEVICE_MAX_SEGMENT_SIZE)
    with pytest.raises(errors.SegmentTooLarge):
        dec.update(ct[:HEADER_SIZE])


def test_decryptor_is_unusable_after_an_error_or_finalize() -> None:
    ct = bytearray(ct_of(pattern(3 * S)))
    ct[HEADER_SIZE + 3] ^= 1
    dec = Decryptor(KEY)
    with pytest.raises(errors.AuthenticationFailed) as info:
        dec.update(bytes(ct))
    assert info.value.segment == 0
    with pytest.raises(ValueError, match="finalized or failed"):
        dec.update(b"")
    with pytest.raises(ValueError, match="finalized or failed"):
        dec.finalize()
    ok = Decryptor(KEY)
    ok.update(ct_of(b"abc"))
    assert ok.finalize() == b"abc"
    with pytest.raises(ValueError, match="finalized or failed"):
        ok.update(b"x")


def test_decryptor_copies_mutable_input() -> None:
    plaintext = pattern(3 * S + 7)
    ct = ct_of(plaintext)
    dec = Decryptor(KEY)
    out = b""
    buf = bytearray(100)
    for i in range(0, len(ct), 100):
        n = len(ct[i : i + 100])
        buf[:n] = ct[i : i + 100]
        out += dec.update(memoryview(buf)[:n])
        buf[:] = bytes(100)  # the caller reuses its buffer
    assert out + dec.finalize() == plaintext


@pytest.mark.parametrize(
    ("cut", "error"),
    [(0, errors.Truncated), (10, errors.Truncated), (HEADER_SIZE, errors.Truncated)],
)
def test_decryptor_finalize_on_short_input(cut: int, error: type[Exception]) -> None:
    dec = Decryptor(KEY)
    dec.update(ct_of(b"abc")[:cut])
    with pytest.raises(error):
        dec.finalize()


def test_errors_form_one_family() -> None:
    for cls in (errors.BadHeader, errors.SegmentTooLarge, errors.Truncated, errors.TrailingData):
        assert issubclass(cls, errors.StreamError)
    assert issubclass(errors.AuthenticationFailed, errors.StreamError)
    assert errors.AuthenticationFailed(3).segment == 3


def test_wrong_key_is_authentication_failed_segment_0() -> None:
    ct = ct_of(pattern(5 * S))
    with pytest.raises(errors.AuthenticationFailed) as info:
        stream.decrypt(ct, bytes(32))
    assert info.value.segment == 0


# --- iterators


def test_encrypt_iter_yields_header_then_segments() -> None:
    parts = list(
        stream.encrypt_iter([pattern(700), pattern(700), pattern(700)], KEY, segment_size=S, salt=SALT)
    )
    assert [len(p) for p in parts] == [HEADER_SIZE, S + TAG_SIZE, S + TAG_SIZE, 2100 - 2 * S + TAG_SIZE]
    assert b"".join(parts) == ct_of(pattern(700) * 3)


def test_decrypt_iter_is_lazy() -> None:
    """Plaintext of a proven not-last segment comes out before the source is exhausted."""
    plaintext = pattern(3 * S)
    ct = ct_of(plaintext)
    consumed: list[int] = []

    def source() -> Iterator[bytes]:
        for i in range(0, len(ct), 500):
            consumed.append(i)
            yield ct[i : i + 500]

    it = stream.decrypt_iter(source(), KEY)
    assert next(it) == plaintext[:S]
    assert consumed[-1] < len(ct) - 500
    assert b"".join(it) == plaintext[S:]


def test_decrypt_iter_raises_at_the_end_of_a_truncated_stream() -> None:
    plaintext = pattern(3 * S)
    ct = ct_of(plaintext)[: HEADER_SIZE + 2 * (S + TAG_SIZE)]
    it = stream.decrypt_iter([ct], KEY)
    assert next(it) == plaintext[:S]  # provisional output before the verdict
    with pytest.raises(errors.Truncated):
        next(it)


# --- files


class ReadOnly:
    """A file object with read() but no readinto()."""

    def __init__(self, data: bytes) -> None:
        self._f = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._f.read(min(n, 333) if n > 0 else n)


class Trickle(io.RawIOBase):
    """A raw source giving at most 100 bytes per readinto, and a sink taking at most 100 per write."""

    def __init__(self, data: bytes = b"") -> None:
        self._data = memoryview(data)
        self.written = bytearray()

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), 100, len(self._data))
        b[:n] = self._data[:n]
        self._data = self._data[n:]
        return n

    def write(self, b: Any) -> int:
        n = min(len(b), 100)
        self.written += bytes(b[:n])
        return n


@pytest.mark.parametrize("n", [0, 1, S, S + 1, 3 * S + 17])
def test_file_functions_with_partial_reads_and_writes(n: int) -> None:
    plaintext = pattern(n)
    ct = ct_of(plaintext)
    sink = Trickle()
    assert stream.encrypt_file(Trickle(plaintext), sink, KEY, segment_size=S, salt=SALT) == len(ct)
    assert bytes(sink.written) == ct
    sink = Trickle()
    assert stream.decrypt_file(Trickle(ct), sink, KEY) == n
    assert bytes(sink.written) == plaintext


def test_file_functions_with_read_only_sources() -> None:
    plaintext = pattern(2 * S + 3)
    out = io.BytesIO()
    stream.encrypt_file(ReadOnly(plaintext), out, KEY, segment_size=S, salt=SALT)  # type: ignore[arg-type]
    assert out.getvalue() == ct_of(plaintext)
    back = io.BytesIO()
    assert stream.decrypt_file(ReadOnly(out.getvalue()), back, KEY) == len(plaintext)  # type: ignore[arg-type]
    assert back.getvalue() == plaintext
    assert b"".join(read_range(io.BytesIO(out.getvalue()), KEY, 5, S)) == plaintext[5 : 5 + S]


def test_decrypt_file_on_disk(tmp_path: Any) -> None:
    plaintext = os.urandom(5 * S + 1)
    src, enc, dec = tmp_path / "p", tmp_path / "c", tmp_path / "d"
    src.write_bytes(plaintext)
    with src.open("rb") as fin, enc.open("wb") as fout:
        stream.encrypt_file(fin, fout, KEY, aead="chacha20-poly1305", segment_size=S)
    with enc.open("rb") as fin, dec.open("wb") as fout:
        assert stream.decrypt_file(fin, fout, KEY, max_segment_size=stream.DEVICE_MAX_SEGMENT_SIZE) == len(
            plaintext
        )
    assert dec.read_bytes() == plaintext


# --- read_range

N = 3 * S + 100  # segments 0, 1, 2 full; segment 3 holds 100 bytes
RANGES = [
    (0, 1),
    (0, S),
    (S - 1, 1),
    (S - 1, 2),
    (S, 1),
    (S, S),
    (S - 1, S + 2),
    (5, 2 * S),
    (3 * S - 1, 2),
    (3 * S, 100),
    (3 * S + 50, 50),
    (3 * S + 99, 1),
    (N - 1, 1),
    (0, N),
    (17, N - 17),
    (N, 0),
    (0, 0),
    (S, 0),
]


@pytest.mark.parametrize("aead", list(stream.AEADS))
@pytest.mark.parametrize(("start", "length"), RANGES)
def test_read_range(aead: str, start: int, length: int) -> None:
    plaintext = pattern(N)
    ct = ct_of(plaintext, aead=aead)
    assert b"".join(read_range(io.BytesIO(ct), KEY, start, length)) == plaintext[start : start + length]


@pytest.mark.parametrize("n", [S, 2 * S])
def test_read_range_full_last_segment(n: int) -> None:
    plaintext = pattern(n)
    ct = ct_of(plaintext)
    assert b"".join(read_range(io.BytesIO(ct), KEY, n - 3, 3)) == plaintext[-3:]
    assert b"".join(read_range(io.BytesIO(ct), KEY, 0, n)) == plaintext


def test_read_range_of_the_empty_stream() -> None:
    ct = ct_of(b"")
    assert list(read_range(io.BytesIO(ct), KEY, 0, 0)) == []
    with pytest.raises(ValueError, match="outside"):
        read_range(io.BytesIO(ct), KEY, 0, 1)


@pytest.mark.parametrize(("start", "length"), [(N, 1), (N - 1, 2), (0, N + 1), (N + 5, 0), (-1, 2), (0, -1)])
def test_read_range_out_of_bounds(start: int, length: int) -> None:
    ct = ct_of(pattern(N))
    with pytest.raises(ValueError, match=r"outside|>= 0"):
        read_range(io.BytesIO(ct), KEY, start, length)


def test_read_range_yields_one_piece_per_segment() -> None:
    plaintext = pattern(N)
    parts = list(read_range(io.BytesIO(ct_of(plaintext)), KEY, S - 10, 2 * S + 20))
    assert [len(p) for p in parts] == [10, S, S, 10]


def test_read_range_verifies_the_segments_it_touches() -> None:
    ct = bytearray(ct_of(pattern(N)))
    start, _ = segment_offsets(1)
    ct[start + 5] ^= 0x10
    assert b"".join(read_range(io.BytesIO(bytes(ct)), KEY, 0, S)) == pattern(N)[:S]  # segment 1 untouched
    with pytest.raises(errors.AuthenticationFailed) as info:
        b"".join(read_range(io.BytesIO(bytes(ct)), KEY, S - 1, 2))
    assert info.value.segment == 1


def test_read_range_checks_the_last_flag_against_the_length() -> None:
    """A stream cut at a segment boundary has a plausible length; its new final segment is not flagged."""
    plaintext = pattern(N)
    cut = ct_of(plaintext)[: segment_offsets(1)[1]]
    assert b"".join(read_range(io.BytesIO(cut), KEY, 0, 10)) == plaintext[:10]
    with pytest.raises(errors.Truncated):
        b"".join(read_range(io.BytesIO(cut), KEY, S, 10))
    extended = ct_of(plaintext) + ct_of(plaintext)[HEADER_SIZE : HEADER_SIZE + 100]
    with pytest.raises(errors.AuthenticationFailed) as info:
        b"".join(read_range(io.BytesIO(extended), KEY, 3 * S, 10))
    assert info.value.segment == 3


def test_read_range_bad_stream_shapes_fail_early() -> None:
    ct = ct_of(pattern(2 * S))
    with pytest.raises(errors.Truncated):
        read_range(io.BytesIO(ct[:30]), KEY, 0, 1)
    with pytest.raises(errors.TrailingData):
        read_range(io.BytesIO(ct + bytes(16)), KEY, 0, 1)
    with pytest.raises(errors.BadHeader):
        read_range(io.BytesIO(b"XFS1" + ct[4:]), KEY, 0, 1)
    big = stream.encrypt(b"x", KEY, segment_size=2 * 1024 * 1024)
    with pytest.raises(errors.SegmentTooLarge):
        read_range(io.BytesIO(big), KEY, 0, 1, max_segment_size=stream.DEVICE_MAX_SEGMENT_SIZE)


def test_read_range_wrong_key() -> None:
    ct = ct_of(pattern(N))
    with pytest.raises(errors.AuthenticationFailed) as info:
        b"".join(read_range(io.BytesIO(ct), bytes(32), 2 * S, 5))
    assert info.value.segment == 2  # random access: the first segment it touches
