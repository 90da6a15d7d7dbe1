"""Content stream v1 vectors (tests/vectors/stream/) through protocol.stream and an independent decoder.

The independent decoder below is written from DESIGN.md "Content stream v1" and the decoding rules in
tests/vectors/stream/README.md, straight-line over the whole input, with cryptography's AEAD and HKDF only.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from protocol import errors, stream

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "stream"
VALID: list[dict[str, Any]] = json.loads((VECTORS / "valid.json").read_text())["vectors"]
INVALID: list[dict[str, Any]] = json.loads((VECTORS / "invalid.json").read_text())["vectors"]


# --- the independent decoder


class RejectedError(Exception):
    def __init__(self, kind: str, segment: int | None = None) -> None:
        super().__init__(kind, segment)
        self.kind = kind
        self.segment = segment


def reference_decode(data: bytes, key: bytes, max_segment_size: int = 16 * 1024 * 1024) -> bytes:
    if len(data) < 42:
        raise RejectedError("Truncated")
    head = data[:42]
    if head[0:4] != b"CFS1" or head[4] != 1 or head[5] not in (1, 2):
        raise RejectedError("BadHeader")
    s = int.from_bytes(head[6:10], "big")
    if s < 1024 or s > 16 * 1024 * 1024:
        raise RejectedError("BadHeader")
    if s > max_segment_size:
        raise RejectedError("SegmentTooLarge")
    skey = HKDF(algorithm=hashes.SHA256(), length=32, salt=head[10:42], info=b"coffer/stream/v1").derive(key)
    aead = AESGCM(skey) if head[5] == 1 else ChaCha20Poly1305(skey)

    def try_open(i: int, last: bool, block: bytes) -> bytes | None:
        try:
            return aead.decrypt(i.to_bytes(11, "big") + bytes([last]), block, head)
        except InvalidTag:
            return None

    body = data[42:]
    full = s + 16
    count = max(1, -(-len(body) // full))
    plaintext = []
    for i in range(count):
        block = body[i * full : (i + 1) * full]
        final = i == count - 1
        if final and len(block) < 16:
            raise RejectedError("Truncated")
        pt = try_open(i, final, block)
        if pt is None:
            if len(block) == full and try_open(i, not final, block) is not None:
                raise RejectedError("Truncated" if final else "TrailingData")
            raise RejectedError("AuthenticationFailed", i)
        if final and i > 0 and not pt:
            raise RejectedError("TrailingData")
        plaintext.append(pt)
    return b"".join(plaintext)


# --- helpers


def plaintext_of(vector: dict[str, Any]) -> bytes:
    spec = vector["plaintext"]
    if isinstance(spec, str):
        return bytes.fromhex(spec)
    assert spec["pattern"] == "counter"
    length = int(spec["length"])
    return (bytes(range(256)) * (length // 256 + 1))[:length]


def max_of(vector: dict[str, Any]) -> int:
    return int(vector.get("max_segment_size", stream.MAX_SEGMENT_SIZE))


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def decode_all_ways(data: bytes, key: bytes, max_segment_size: int) -> list[tuple[str, bytes | Exception]]:
    """protocol.stream's decoders, each giving the plaintext or the StreamError it raised."""
    results: list[tuple[str, bytes | Exception]] = []

    def run(label: str, fn: Any, *args: Any) -> None:
        try:
            results.append((label, fn(*args)))
        except errors.StreamError as exc:
            results.append((label, exc))

    def pushed(size: int, as_bytearray: bool) -> bytes:
        dec = stream.Decryptor(key, max_segment_size=max_segment_size)
        out = [dec.update(bytearray(c) if as_bytearray else c) for c in chunked(data, size)]
        return b"".join(out) + dec.finalize()

    def to_file() -> bytes:
        sink = io.BytesIO()
        n = stream.decrypt_file(io.BytesIO(data), sink, key, max_segment_size=max_segment_size)
        assert n == len(sink.getvalue())
        return sink.getvalue()

    run("decrypt", lambda: stream.decrypt(data, key, max_segment_size=max_segment_size))
    sizes = (1, 7, 1000) if len(data) <= 16384 else (1000, 65537)
    for size in (*sizes, max(1, len(data))):
        for as_bytearray in (False, True):
            run(
                f"update/{size}/{'bytearray' if as_bytearray else 'bytes'}",
                pushed,
                size,
                as_bytearray,
            )
    run(
        "decrypt_iter",
        lambda: b"".join(stream.decrypt_iter(chunked(data, 333), key, max_segment_size=max_segment_size)),
    )
    run("decrypt_file", to_file)
    return results


# --- the generator is deterministic and the files are current


def test_vector_files_match_a_fresh_run_of_the_generator() -> None:
    spec = importlib.util.spec_from_file_location("stream_vectors_generate", VECTORS / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    first, second = module.build(), module.build()
    assert first == second
    for name, doc in first.items():
        assert module.dumps(doc) == (VECTORS / name).read_text(), f"{name} is stale: run generate.py"


def test_vectors_cover_what_the_issue_lists() -> None:
    names = {v["name"] for v in VALID}
    for required in ("aes-1k-empty", "aes-1k-1", "aes-1k-s", "aes-1k-s+1", "aes-1k-2s", "chacha-1k-2s"):
        assert required in names
    assert {v["aead"] for v in VALID} == set(stream.AEADS)
    kinds = {v["error"] for v in INVALID}
    assert kinds == {"BadHeader", "SegmentTooLarge", "Truncated", "TrailingData", "AuthenticationFailed"}


# --- valid vectors


@pytest.mark.parametrize("vector", VALID, ids=[v["name"] for v in VALID])
def test_valid_vector(vector: dict[str, Any]) -> None:
    key, salt = bytes.fromhex(vector["key"]), bytes.fromhex(vector["salt"])
    plaintext = plaintext_of(vector)
    kw: dict[str, Any] = {"aead": vector["aead"], "segment_size": vector["segment_size"], "salt": salt}

    ciphertext = stream.encrypt(plaintext, key, **kw)
    assert len(ciphertext) == vector["ciphertext_length"]
    assert hashlib.sha256(ciphertext).hexdigest() == vector["ciphertext_sha256"]
    if "ciphertext" in vector:
        assert ciphertext.hex() == vector["ciphertext"]
    assert stream.ciphertext_length(len(plaintext), vector["segment_size"]) == len(ciphertext)
    assert stream.plaintext_length(len(ciphertext), vector["segment_size"]) == len(plaintext)

    enc = stream.Encryptor(key, **kw)
    pushed = b"".join(enc.update(c) for c in chunked(plaintext, 1000)) + enc.finalize()
    assert pushed == ciphertext
    out = io.BytesIO()
    assert stream.encrypt_file(io.BytesIO(plaintext), out, key, **kw) == len(ciphertext)
    assert out.getvalue() == ciphertext

    assert reference_decode(ciphertext, key, max_of(vector)) == plaintext
    for label, result in decode_all_ways(ciphertext, key, max_of(vector)):
        assert result == plaintext, label

    n = len(plaintext)
    for start, length in {(0, n), (0, min(n, 1)), (n // 2, n - n // 2), (max(0, n - 1), min(n, 1))}:
        got = b"".join(
            stream.read_range(io.BytesIO(ciphertext), key, start, length, max_segment_size=max_of(vector))
        )
        assert got == plaintext[start : start + length]


# --- invalid vectors


@pytest.mark.parametrize("vector", INVALID, ids=[v["name"] for v in INVALID])
def test_invalid_vector(vector: dict[str, Any]) -> None:
    data, key = bytes.fromhex(vector["ciphertext"]), bytes.fromhex(vector["key"])
    expected = (vector["error"], vector.get("segment"))

    with pytest.raises(RejectedError) as ref:
        reference_decode(data, key, max_of(vector))
    assert (ref.value.kind, ref.value.segment) == expected, "independent decoder"

    for label, result in decode_all_ways(data, key, max_of(vector)):
        assert isinstance(result, errors.StreamError), f"{label} accepted an invalid stream"
        got = (type(result).__name__, getattr(result, "segment", None))
        assert got == expected, label
