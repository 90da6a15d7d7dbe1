"""ECDSA P-256 raw signature helpers (FIPS 186-5 §6.4; RFC 7518 §3.4 raw r||s)."""

from __future__ import annotations

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
RAW_SIGNATURE_SIZE = 64


def low_s(signature: bytes) -> bytes:
    """The canonical (low-s) form of a raw r||s signature: s replaced by n - s when s > n/2.

    (r, s) and (r, n - s) verify alike, so without this a relay could re-encode a token and change its hash.
    Anything that is not 64 bytes is returned unchanged (verification refuses it anyway).
    """
    if len(signature) != RAW_SIGNATURE_SIZE:
        return signature
    s = int.from_bytes(signature[32:], "big")
    if s <= P256_ORDER // 2:
        return signature
    return signature[:32] + (P256_ORDER - s).to_bytes(32, "big")
