"""The state document (DESIGN.md "Device state and crash safety"): one binary layout, parse() and build().

    header (12)  = b"CST1" | counter (u64, big-endian)            -- clear, read at start-up without the DEK
    salt (32)    random per document
    nonce (12)   random per document
    body         AEAD(key = HKDF-SHA256(DEK, salt, info "coffer/state/v1", 32), nonce, plaintext,
                      aad = header || device_id as ASCII), with the device's AEAD

Every way a document can be bad (length, magic, tag, key, device_id) ends in `BadStateDocumentError`.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from device_os.core.aead import AeadName, cipher

MAGIC = b"CST1"
HEADER_LENGTH = 12
SALT_LENGTH = 32
NONCE_LENGTH = 12
TAG_LENGTH = 16
MIN_LENGTH = HEADER_LENGTH + SALT_LENGTH + NONCE_LENGTH + TAG_LENGTH
MAX_COUNTER = 2**64 - 1
INFO = b"coffer/state/v1"
_HEADER = struct.Struct(">4sQ")


class BadStateDocumentError(Exception):
    """The document is malformed or fails authentication (opaque on purpose)."""


def build_header(counter: int) -> bytes:
    if not 0 <= counter <= MAX_COUNTER:
        raise ValueError("counter out of range")
    return _HEADER.pack(MAGIC, counter)


def parse_header(data: bytes | None) -> int | None:
    """The counter in a document's header, or None when the header is missing or unreadable."""
    if data is None or len(data) < HEADER_LENGTH:
        return None
    magic, counter = _HEADER.unpack(data[:HEADER_LENGTH])
    if magic != MAGIC:
        return None
    return int(counter)


@dataclass(frozen=True)
class StateDocument:
    counter: int
    plaintext: bytes


def _body_key(dek: bytes, salt: bytes) -> bytes:
    if len(dek) != 32:
        raise ValueError("the DEK is 32 bytes")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=INFO).derive(dek)


def _aad(header: bytes, device_id: str) -> bytes:
    return header + device_id.encode("ascii")


def build(counter: int, plaintext: bytes, *, dek: bytes, device_id: str, aead: AeadName) -> bytes:
    """Encrypt a state body into a document at `counter`, drawing a fresh salt and nonce."""
    return _build_from_parts(
        counter,
        plaintext,
        dek=dek,
        device_id=device_id,
        aead=aead,
        salt=os.urandom(SALT_LENGTH),
        nonce=os.urandom(NONCE_LENGTH),
    )


def _build_from_parts(
    counter: int, plaintext: bytes, *, dek: bytes, device_id: str, aead: AeadName, salt: bytes, nonce: bytes
) -> bytes:
    if len(salt) != SALT_LENGTH or len(nonce) != NONCE_LENGTH:
        raise ValueError("salt is 32 bytes, nonce 12")
    header = build_header(counter)
    body = cipher(aead, _body_key(dek, salt)).encrypt(nonce, plaintext, _aad(header, device_id))
    return header + salt + nonce + body


def parse(data: bytes, *, dek: bytes, device_id: str, aead: AeadName) -> StateDocument:
    """Decrypt and authenticate a document; raises BadStateDocumentError for any fault."""
    counter = parse_header(data)
    if counter is None or len(data) < MIN_LENGTH:
        raise BadStateDocumentError("not a state document")
    header = data[:HEADER_LENGTH]
    salt = data[HEADER_LENGTH : HEADER_LENGTH + SALT_LENGTH]
    nonce = data[HEADER_LENGTH + SALT_LENGTH : HEADER_LENGTH + SALT_LENGTH + NONCE_LENGTH]
    body = data[HEADER_LENGTH + SALT_LENGTH + NONCE_LENGTH :]
    try:
        plaintext = cipher(aead, _body_key(dek, salt)).decrypt(nonce, body, _aad(header, device_id))
    except InvalidTag as exc:
        raise BadStateDocumentError("state document failed authentication") from exc
    return StateDocument(counter=counter, plaintext=plaintext)
