"""Generate the content stream v1 vectors (valid.json, invalid.json) deterministically.

    .venv/bin/python tests/vectors/stream/generate.py            # rewrite both files
    .venv/bin/python tests/vectors/stream/generate.py --check    # exit 1 if the files differ from a fresh run

A second, straight-line encoder written from DESIGN.md "Content stream v1" with cryptography's AEAD and HKDF
only: it imports nothing from `protocol`, so the vectors do not just echo protocol.stream. Keys, salts and
plaintexts come from SHA-256 of fixed labels (no randomness). The expected error of each invalid stream is
written here by hand from the decoding rules in the README, not computed by a decoder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HERE = Path(__file__).resolve().parent
AEAD_IDS = {"aes-256-gcm": 1, "chacha20-poly1305": 2}
KIB, MIB = 1024, 1024 * 1024
FULL_HEX_LIMIT = 8 * KIB  # valid vectors carry the whole ciphertext in hex up to this size, else its SHA-256


def det(label: str, n: int) -> bytes:
    """n deterministic bytes: SHA-256("coffer/stream/vectors/" label || counter (4 bytes BE)) concatenated."""
    out = b"".join(
        hashlib.sha256(f"coffer/stream/vectors/{label}".encode() + i.to_bytes(4, "big")).digest()
        for i in range(-(-n // 32))
    )
    return out[:n]


def counter(n: int) -> bytes:
    """The "counter" pattern: byte j is j mod 256."""
    return (bytes(range(256)) * (n // 256 + 1))[:n]


def header(aead_id: int, s: int, salt: bytes, *, magic: bytes = b"CFS1", version: int = 1) -> bytes:
    return magic + bytes((version, aead_id)) + s.to_bytes(4, "big") + salt


def seal(key: bytes, hdr: bytes, index: int, last: bool, plaintext: bytes) -> bytes:
    """Segment `index`: AEAD(HKDF-SHA256(K, salt, "coffer/stream/v1"), i (11 bytes BE) || last flag, pt,
    aad = header)."""
    skey = HKDF(algorithm=hashes.SHA256(), length=32, salt=hdr[10:42], info=b"coffer/stream/v1").derive(key)
    aead = AESGCM(skey) if hdr[5] == 1 else ChaCha20Poly1305(skey)
    return aead.encrypt(index.to_bytes(11, "big") + (b"\x01" if last else b"\x00"), plaintext, hdr)


def pieces(plaintext: bytes, s: int) -> list[bytes]:
    """The plaintext cut into segments of s bytes, the last 1..s (an empty plaintext: one empty segment)."""
    return [plaintext[i : i + s] for i in range(0, len(plaintext), s)] or [b""]


def encode(key: bytes, aead: str, s: int, salt: bytes, plaintext: bytes) -> bytes:
    hdr = header(AEAD_IDS[aead], s, salt)
    segs = pieces(plaintext, s)
    return hdr + b"".join(seal(key, hdr, i, i == len(segs) - 1, seg) for i, seg in enumerate(segs))


def _valid() -> list[dict[str, Any]]:
    cases: list[tuple[str, str, str, int, int, bool, int | None]] = [
        # name, description, aead, segment size, plaintext length, counter pattern?, reader's max segment size
        ("aes-1k-empty", "empty plaintext: one empty last segment", "aes-256-gcm", KIB, 0, False, None),
        ("aes-1k-1", "1 byte", "aes-256-gcm", KIB, 1, False, None),
        ("aes-1k-s-1", "s - 1 bytes", "aes-256-gcm", KIB, KIB - 1, False, None),
        ("aes-1k-s", "exactly s: one full last segment", "aes-256-gcm", KIB, KIB, False, None),
        (
            "aes-1k-s+1",
            "s + 1: a full segment, then a 1-byte last one",
            "aes-256-gcm",
            KIB,
            KIB + 1,
            False,
            None,
        ),
        (
            "aes-1k-2s",
            "2s: ends with a full last segment, no extra empty one",
            "aes-256-gcm",
            KIB,
            2 * KIB,
            False,
            None,
        ),
        ("aes-1k-2s+1", "2s + 1", "aes-256-gcm", KIB, 2 * KIB + 1, False, None),
        ("chacha-1k-empty", "empty plaintext", "chacha20-poly1305", KIB, 0, False, None),
        ("chacha-1k-1", "1 byte", "chacha20-poly1305", KIB, 1, False, None),
        ("chacha-1k-s", "exactly s", "chacha20-poly1305", KIB, KIB, False, None),
        ("chacha-1k-s+1", "s + 1", "chacha20-poly1305", KIB, KIB + 1, False, None),
        ("chacha-1k-2s", "2s", "chacha20-poly1305", KIB, 2 * KIB, False, None),
        (
            "chacha-1500-3001",
            "s not a power of two: 1500, 2s + 1",
            "chacha20-poly1305",
            1500,
            3001,
            False,
            None,
        ),
        ("aes-64k-s", "default s = 65536, exactly s", "aes-256-gcm", 64 * KIB, 64 * KIB, True, None),
        ("aes-64k-s+1", "default s, s + 1", "aes-256-gcm", 64 * KIB, 64 * KIB + 1, True, None),
        ("aes-64k-2s", "default s, 2s", "aes-256-gcm", 64 * KIB, 128 * KIB, True, None),
        (
            "aes-64k-200000",
            "default s, 200000 bytes (4 segments)",
            "aes-256-gcm",
            64 * KIB,
            200000,
            True,
            None,
        ),
        ("chacha-64k-2s+1", "default s, 2s + 1", "chacha20-poly1305", 64 * KIB, 128 * KIB + 1, True, None),
        (
            "aes-1m-10",
            "s = 1 MiB, the device's limit, read with that limit",
            "aes-256-gcm",
            MIB,
            10,
            False,
            MIB,
        ),
        (
            "chacha-1m-s+1",
            "s = 1 MiB at the device's limit, s + 1",
            "chacha20-poly1305",
            MIB,
            MIB + 1,
            True,
            MIB,
        ),
        ("aes-16m-3", "s = 16 MiB, the format's maximum", "aes-256-gcm", 16 * MIB, 3, False, None),
    ]
    out = []
    for name, description, aead, s, length, pattern, max_s in cases:
        key, salt = det(f"key/{name}", 32), det(f"salt/{name}", 32)
        plaintext = counter(length) if pattern else det(f"plaintext/{name}", length)
        ct = encode(key, aead, s, salt, plaintext)
        entry: dict[str, Any] = {
            "name": name,
            "description": description,
            "key": key.hex(),
            "aead": aead,
            "segment_size": s,
            "salt": salt.hex(),
            "plaintext": {"pattern": "counter", "length": length} if pattern else plaintext.hex(),
        }
        if max_s is not None:
            entry["max_segment_size"] = max_s
        entry["ciphertext_length"] = len(ct)
        entry["ciphertext_sha256"] = hashlib.sha256(ct).hexdigest()
        if len(ct) <= FULL_HEX_LIMIT:
            entry["ciphertext"] = ct.hex()
        out.append(entry)
    return out


def _invalid() -> list[dict[str, Any]]:
    s = KIB
    key = det("key/invalid", 32)
    salt = det("salt/invalid", 32)
    other_key = det("key/invalid/other", 32)
    p3 = det("plaintext/invalid/3", 2 * s + 100)  # segments 0, 1 full; 2 holds 100 bytes
    p2 = det("plaintext/invalid/2", 2 * s)  # segments 0, 1 full (1 is last)
    cases: list[dict[str, Any]] = []

    def add(
        name: str, description: str, ct: bytes, error: str, segment: int | None = None, **extra: Any
    ) -> None:
        case: dict[str, Any] = {"name": name, "description": description, "key": extra.pop("key", key).hex()}
        case.update(extra)
        case["ciphertext"] = ct.hex()
        case["error"] = error
        if segment is not None:
            case["segment"] = segment
        cases.append(case)

    for aead in AEAD_IDS:
        tag = "aes" if aead == "aes-256-gcm" else "chacha"
        hdr = header(AEAD_IDS[aead], s, salt)
        s3 = encode(key, aead, s, salt, p3)
        s2 = encode(key, aead, s, salt, p2)
        seg = [s3[42 + i * (s + 16) : 42 + (i + 1) * (s + 16)] for i in range(3)]
        seg2 = [s2[42 + i * (s + 16) : 42 + (i + 1) * (s + 16)] for i in range(2)]
        if aead == "aes-256-gcm":
            empty_body = encode(key, aead, s, salt, b"")[42:]  # header cases: the decoder stops at the header
            add("empty-input", "no bytes at all", b"", "Truncated")
            add("truncated-header", "the first 41 bytes of a valid stream", s3[:41], "Truncated")
            add("header-only", "a valid header and nothing after it", s3[:42], "Truncated")
            add(
                "header-plus-15", "the header and 15 bytes: ends inside segment 0's tag", s3[:57], "Truncated"
            )
            add("bad-magic", 'magic "CFS2"', header(1, s, salt, magic=b"CFS2") + empty_body, "BadHeader")
            add(
                "bad-magic-lowercase",
                'magic "cfs1"',
                header(1, s, salt, magic=b"cfs1") + empty_body,
                "BadHeader",
            )
            add("version-0", "version byte 0x00", header(1, s, salt, version=0) + empty_body, "BadHeader")
            add("version-2", "version byte 0x02", header(1, s, salt, version=2) + empty_body, "BadHeader")
            add("aead-id-0", "AEAD id 0x00", header(0, s, salt) + empty_body, "BadHeader")
            add("aead-id-3", "AEAD id 0x03", header(3, s, salt) + empty_body, "BadHeader")
            add("segment-size-0", "s = 0", header(1, 0, salt) + empty_body, "BadHeader")
            add("segment-size-1023", "s = 1023, below 1 KiB", header(1, 1023, salt) + empty_body, "BadHeader")
            big = 16 * MIB + 1
            add(
                "segment-size-16m+1",
                "s = 16 MiB + 1, above the format's maximum",
                header(1, big, salt) + empty_body,
                "BadHeader",
            )
            add(
                "segment-size-16m+1-device",
                "s = 16 MiB + 1 read with the device's limit: the format check first",
                header(1, big, salt) + empty_body,
                "BadHeader",
                max_segment_size=MIB,
            )
            two_m = encode(key, aead, 2 * MIB, salt, b"over the device limit")
            add(
                "device-limit-2m",
                "a valid stream with s = 2 MiB, read with the device's limit (1 MiB)",
                two_m,
                "SegmentTooLarge",
                max_segment_size=MIB,
            )
            one_m1 = encode(key, aead, MIB + 1, salt, b"one byte over")
            add(
                "device-limit-1m+1",
                "a valid stream with s = 1 MiB + 1, read with max 1 MiB",
                one_m1,
                "SegmentTooLarge",
                max_segment_size=MIB,
            )
            add(
                "header-salt-bit",
                "one bit of the salt flipped (the segment key and the aad change)",
                hdr[:20] + bytes((hdr[20] ^ 0x01,)) + hdr[21:] + s3[42:],
                "AuthenticationFailed",
                0,
            )
            add(
                "header-segment-size-1025",
                "s changed 1024 -> 1025 (still legal): aad and offsets change",
                header(1, 1025, salt) + s3[42:],
                "AuthenticationFailed",
                0,
            )
            add(
                "header-aead-swapped",
                "AEAD id changed 0x01 -> 0x02 on an AES-256-GCM stream",
                header(2, s, salt) + s3[42:],
                "AuthenticationFailed",
                0,
            )
            add(
                "wrong-key-empty",
                "an empty-plaintext stream read with another key",
                encode(other_key, aead, s, salt, b""),
                "AuthenticationFailed",
                0,
            )
            add(
                "wrong-key-one-full-segment",
                "plaintext of exactly s read with another key",
                encode(other_key, aead, s, salt, p2[:s]),
                "AuthenticationFailed",
                0,
            )
            add(
                "empty-not-flagged-last",
                "empty plaintext sealed as segment 0 with last = 0",
                hdr + seal(key, hdr, 0, False, b""),
                "AuthenticationFailed",
                0,
            )
            add(
                "other-stream-segment",
                "segment 1 taken from a stream with another salt",
                hdr
                + seg[0]
                + encode(key, aead, s, det("salt/other", 32), p3)[42 + s + 16 : 42 + 2 * (s + 16)]
                + seg[2],
                "AuthenticationFailed",
                1,
            )
        add(
            f"{tag}-truncated-after-0",
            "cut at the boundary after segment 0 (of 3)",
            hdr + seg[0],
            "Truncated",
        )
        add(
            f"{tag}-truncated-after-1",
            "cut at the boundary after segment 1 (of 3)",
            hdr + seg[0] + seg[1],
            "Truncated",
        )
        add(
            f"{tag}-truncated-in-tag",
            "cut 10 bytes into segment 2: ends inside a tag",
            s3[: 42 + 2 * (s + 16) + 10],
            "Truncated",
        )
        add(
            f"{tag}-truncated-mid-1",
            "cut 500 bytes into segment 1",
            s3[: 42 + s + 16 + 500],
            "AuthenticationFailed",
            1,
        )
        add(f"{tag}-truncated-mid-last", "the last 10 bytes removed", s3[:-10], "AuthenticationFailed", 2)
        add(
            f"{tag}-bitflip-1",
            "one bit flipped in segment 1's ciphertext",
            hdr + seg[0] + seg[1][:17] + bytes((seg[1][17] ^ 0x80,)) + seg[1][18:] + seg[2],
            "AuthenticationFailed",
            1,
        )
        add(
            f"{tag}-bitflip-last-tag",
            "one bit flipped in the last segment's tag",
            s3[:-1] + bytes((s3[-1] ^ 0x01,)),
            "AuthenticationFailed",
            2,
        )
        add(
            f"{tag}-swapped-0-1",
            "segments 0 and 1 swapped",
            hdr + seg[1] + seg[0] + seg[2],
            "AuthenticationFailed",
            0,
        )
        add(
            f"{tag}-dropped-1",
            "segment 1 removed: segment 2 arrives as segment 1",
            hdr + seg[0] + seg[2],
            "AuthenticationFailed",
            1,
        )
        add(
            f"{tag}-first-flagged-last",
            "segment 0 sealed with last = 1, then segments 1 and 2",
            hdr + seal(key, hdr, 0, True, p3[:s]) + seg[1] + seg[2],
            "TrailingData",
        )
        add(
            f"{tag}-middle-flagged-last",
            "segment 1 (full, not last) sealed with last = 1",
            hdr + seg[0] + seal(key, hdr, 1, True, p3[s : 2 * s]) + seg[2],
            "TrailingData",
        )
        add(
            f"{tag}-last-not-flagged-partial",
            "the 100-byte last segment sealed with last = 0",
            hdr + seg[0] + seg[1] + seal(key, hdr, 2, False, p3[2 * s :]),
            "AuthenticationFailed",
            2,
        )
        add(
            f"{tag}-last-not-flagged-full",
            "a full final segment sealed with last = 0 (same as a cut stream)",
            hdr + seg2[0] + seal(key, hdr, 1, False, p2[s:]),
            "Truncated",
        )
        add(f"{tag}-trailing-byte", "one 0x00 byte after a full last segment", s2 + b"\x00", "TrailingData")
        add(
            f"{tag}-trailing-100",
            "100 bytes after a full last segment",
            s2 + det("junk", 100),
            "TrailingData",
        )
        add(
            f"{tag}-trailing-after-partial",
            "one byte after a partial last segment: it no longer authenticates",
            s3 + b"\x00",
            "AuthenticationFailed",
            2,
        )
        add(
            f"{tag}-extra-empty-after-last",
            "an empty last segment (index 2) after a full segment flagged last",
            s2 + seal(key, hdr, 2, True, b""),
            "TrailingData",
        )
        add(
            f"{tag}-noncanonical-empty-last",
            "full segments 0, 1 not flagged, then an empty last segment 2",
            hdr + seg2[0] + seal(key, hdr, 1, False, p2[s:]) + seal(key, hdr, 2, True, b""),
            "TrailingData",
        )
        add(
            f"{tag}-wrong-key",
            "a valid 3-segment stream read with another key",
            s3,
            "AuthenticationFailed",
            0,
            key=other_key,
        )
    return cases


def build() -> dict[str, dict[str, Any]]:
    common = "content stream v1 (DESIGN.md 'Wire formats'); made by generate.py, see README.md"
    return {
        "valid.json": {"description": common, "vectors": _valid()},
        "invalid.json": {"description": common, "vectors": _invalid()},
    }


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=1) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the files instead of writing them")
    args = parser.parse_args(argv)
    stale = []
    for name, doc in build().items():
        path = HERE / name
        text = dumps(doc)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"stale: {', '.join(stale)}; run {Path(__file__).name}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
