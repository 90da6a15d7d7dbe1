"""base64url without padding (RFC 7515 §2), strict in both directions."""

from __future__ import annotations

import base64
import binascii
import re

from protocol.errors import EncodingError

_B64URL = re.compile(r"\A[A-Za-z0-9_-]*\Z")


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str | bytes) -> bytes:
    """Decode base64url without padding; reject padding, other alphabets and non-canonical trailing bits."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError as exc:
            raise EncodingError("base64url: not ASCII") from exc
    if not _B64URL.match(text) or len(text) % 4 == 1:
        raise EncodingError("base64url: invalid characters or length")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise EncodingError("base64url: undecodable") from exc
    if b64url_encode(data) != text:
        raise EncodingError("base64url: non-canonical encoding")
    return data
