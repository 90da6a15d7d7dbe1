"""HPKE key wrapping, the safe recipe (DESIGN.md "Wire formats"; RFC 9180 base mode, single-shot §6.1).

Suite: DHKEM(P-256, HKDF-SHA256) 0x0010, HKDF-SHA256 0x0001, AES-128-GCM 0x0001. Wire form: enc (65 bytes,
the uncompressed ephemeral point) || AEAD ciphertext with its 16-byte tag. Content keys and payments use the
`info` strings below, so a sealed blob cannot be replayed for another order or another purpose.

`open()` uses the recipient's private key only through `public_key()` and `exchange(ec.ECDH(), peer)`: the
device's KEM key stays in the TPM (TPM2_ECDH_ZGen). Every failure to open is one opaque `HpkeError`.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import ec

from protocol import _hpke
from protocol._hpke import RecipientKey
from protocol.errors import HpkeError

__all__ = [
    "CONTENT_KEY_INFO_LABEL",
    "ENC_SIZE",
    "OVERHEAD",
    "PAYMENT_INFO_LABEL",
    "HpkeError",
    "RecipientKey",
    "content_key_info",
    "open",
    "payment_info",
    "seal",
]

ENC_SIZE = _hpke.N_ENC
#: Bytes a sealed blob adds to its plaintext: enc and the AES-GCM tag.
OVERHEAD = _hpke.N_ENC + _hpke.N_T
CONTENT_KEY_INFO_LABEL = b"coffer/content-key/v1"
PAYMENT_INFO_LABEL = b"coffer/payment/v1"


def _info(label: bytes, order_id: str) -> bytes:
    if "\x00" in order_id:
        raise ValueError("order_id must not contain NUL")
    return label + b"\x00" + order_id.encode("utf-8")


def content_key_info(order_id: str) -> bytes:
    """info for wrapping an order's content key Ke: `coffer/content-key/v1` || 0x00 || order_id (UTF-8)."""
    return _info(CONTENT_KEY_INFO_LABEL, order_id)


def payment_info(order_id: str) -> bytes:
    """info for sealing a payment JWS to the center: `coffer/payment/v1` || 0x00 || order_id (UTF-8)."""
    return _info(PAYMENT_INFO_LABEL, order_id)


def _seal_from_parts(
    recipient: ec.EllipticCurvePublicKey,
    plaintext: bytes,
    *,
    info: bytes,
    aad: bytes,
    ephemeral_private_key: ec.EllipticCurvePrivateKey,
) -> bytes:
    """RFC 9180 §6.1 SealBase with the ephemeral key given (deterministic: test vectors pin the output)."""
    shared_secret, enc = _hpke.encap_from_parts(recipient, ephemeral_private_key)
    return enc + _hpke.key_schedule(shared_secret, info).seal(plaintext, aad)


def seal(recipient: ec.EllipticCurvePublicKey, plaintext: bytes, *, info: bytes, aad: bytes = b"") -> bytes:
    """Seal `plaintext` to `recipient` (RFC 9180 §6.1 SealBase); returns enc || ciphertext.

    Raises ValueError if `recipient` is not a P-256 key.
    """
    if not isinstance(recipient, ec.EllipticCurvePublicKey) or not isinstance(recipient.curve, ec.SECP256R1):
        raise ValueError("HPKE recipient must be a P-256 public key")
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    return _seal_from_parts(recipient, plaintext, info=info, aad=aad, ephemeral_private_key=ephemeral)


def open(recipient: RecipientKey, sealed: bytes, *, info: bytes, aad: bytes = b"") -> bytes:
    """Open enc || ciphertext (RFC 9180 §6.1 OpenBase) with a key that can only `exchange()`.

    Raises HpkeError, the same for anything wrong with `sealed`, `info` or `aad` and for a key that does not
    match.
    """
    if len(sealed) < OVERHEAD:
        raise HpkeError("HPKE open failed")
    enc, ciphertext = sealed[: _hpke.N_ENC], sealed[_hpke.N_ENC :]
    try:
        shared_secret = _hpke.decap(enc, recipient)
        return _hpke.key_schedule(shared_secret, info).open(ciphertext, aad)
    except (_hpke.InvalidEncError, InvalidTag) as exc:
        raise HpkeError("HPKE open failed") from exc
