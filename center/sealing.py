"""Secrets at rest under the center data key (DESIGN.md "Keys"): each order's Ke and salt, and digests of
bearer tokens and credit codes.

`seal(data_key, plaintext, aad)` = nonce (12) || AES-256-GCM(data_key, nonce, plaintext, aad); the aad
names the row (e.g. the order_id), so a sealed value copied to another row does not open. `open_sealed` fails
closed with `SealedValueError`. Token digests are plain SHA-256 (tokens carry 256 random bits, and the
enrollment JWS names that very digest); credit codes are HMAC-SHA256 under the data key, so a database dump
alone cannot confirm a guessed code.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from center.errors import CenterError
from protocol.b64 import b64url_encode

NONCE_BYTES = 12


class SealedValueError(CenterError):
    """A sealed value does not open under the data key (another key, another row, or altered)."""


def _seal_from_parts(data_key: bytes, plaintext: bytes, aad: bytes, nonce: bytes) -> bytes:
    return nonce + AESGCM(data_key).encrypt(nonce, plaintext, aad)


def seal(data_key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    return _seal_from_parts(data_key, plaintext, aad, os.urandom(NONCE_BYTES))


def open_sealed(data_key: bytes, sealed: bytes, aad: bytes) -> bytes:
    if len(sealed) < NONCE_BYTES + 16:
        raise SealedValueError("sealed value too short")
    try:
        return AESGCM(data_key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    except InvalidTag as exc:
        raise SealedValueError("sealed value does not open") from exc


def token_hash(token: str) -> str:
    """base64url SHA-256 of a bearer token (the enrollment's `device_token_hash`)."""
    return b64url_encode(hashlib.sha256(token.encode("ascii")).digest())


def code_hash(data_key: bytes, code: str) -> str:
    """hex HMAC-SHA256 of a credit code under the data key."""
    return hmac.new(data_key, b"coffer/credit-code/v1\x00" + code.encode("ascii"), hashlib.sha256).hexdigest()
