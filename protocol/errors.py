"""Errors raised by `protocol`, one family per format.

    ProtocolError
    ├── EncodingError             bad base64url, JSON or JWK shape
    ├── StreamError               content stream v1 (protocol.stream)
    │   ├── BadHeader
    │   ├── SegmentTooLarge
    │   ├── Truncated
    │   ├── TrailingData
    │   └── AuthenticationFailed  (.segment: index of the first segment that failed)
    ├── HpkeError                 HPKE open failed (wrong key, tampered enc/ciphertext, wrong info)
    ├── JwsError                  a signed message is not acceptable
    │   ├── JwsExpired            valid signature, but exp <= now
    │   └── JwsWrongAudience      valid signature, addressed to another device
    ├── AttestationError          TPM2_Certify evidence or credential material rejected
    └── PricingShortfall          pricing: the purses cannot pay the price

Every check fails closed: callers catch the family, never a library's exception.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base of every error raised by `protocol`."""


class EncodingError(ProtocolError):
    """Input is not in the expected encoding (base64url, JSON, JWK, fixed length)."""


class StreamError(ProtocolError):
    """Content stream v1 could not be read or written."""


class BadHeader(StreamError):
    """The 42-byte header is malformed, of another version, or names an unknown AEAD."""


class SegmentTooLarge(StreamError):
    """The header's segment size exceeds the reader's limit (the device refuses s > 1 MiB)."""


class Truncated(StreamError):
    """The input ended before the last segment."""


class TrailingData(StreamError):
    """Bytes follow the last segment."""


class AuthenticationFailed(StreamError):
    """A segment failed authentication (tampered, reordered, or a wrong key: then segment 0)."""

    def __init__(self, segment: int) -> None:
        super().__init__(f"segment {segment} failed authentication")
        self.segment = segment


class HpkeError(ProtocolError):
    """HPKE open failed. Deliberately opaque: wrong key, wrong info and tampering look the same."""


class JwsError(ProtocolError):
    """A signed message (JWS compact) is malformed, wrongly signed, or of the wrong kind."""


class JwsExpired(JwsError):
    """The signature is valid but the message's `exp` is not after `now`."""


class JwsWrongAudience(JwsError):
    """The signature is valid but the message names another device."""


class AttestationError(ProtocolError):
    """TPM attestation evidence (TPM2_Certify, EK certificate, credential) is not acceptable."""


class PricingShortfall(ProtocolError):
    """The purses cannot pay the price; nothing is debited."""
