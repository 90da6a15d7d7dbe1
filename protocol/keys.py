"""Key identities: P-256 JWKs, RFC 7638 thumbprints, the center root fingerprint and device_id.

DESIGN.md "Keys" and "Signed messages": `kid` = base64url RFC 7638 thumbprint; root fingerprint = lowercase
hex SHA-256 of the SubjectPublicKeyInfo DER; device_id = `dev_` + lowercase base32 (no padding) of the first
20 bytes of SHA-256 over the attestation key's SubjectPublicKeyInfo DER.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from protocol.b64 import b64url_decode, b64url_encode
from protocol.errors import EncodingError

P256_COORDINATE_BYTES = 32
DEVICE_ID_RE = re.compile(r"\Adev_[a-z2-7]{32}\Z")


def spki_der(public_key: ec.EllipticCurvePublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_to_pem(public_key: ec.EllipticCurvePublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def public_key_from_pem(pem: str | bytes) -> ec.EllipticCurvePublicKey:
    """Load a P-256 public key from PEM; any other key type or curve is an EncodingError."""
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise EncodingError("not a PEM public key") from exc
    return _require_p256(key)


def _require_p256(key: object) -> ec.EllipticCurvePublicKey:
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise EncodingError("not a P-256 public key")
    return key


def jwk_from_public_key(public_key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The public JWK (RFC 7518 §6.2.1) of a P-256 key: exactly kty, crv, x, y."""
    _require_p256(public_key)
    numbers = public_key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url_encode(numbers.x.to_bytes(P256_COORDINATE_BYTES, "big")),
        "y": b64url_encode(numbers.y.to_bytes(P256_COORDINATE_BYTES, "big")),
    }


def public_key_from_jwk(jwk: Any) -> ec.EllipticCurvePublicKey:
    """Parse a public P-256 JWK strictly: no private member, 32-byte coordinates, a point on the curve."""
    if not isinstance(jwk, dict):
        raise EncodingError("JWK is not an object")
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise EncodingError("JWK is not an EC P-256 key")
    if "d" in jwk:
        raise EncodingError("JWK carries a private key")
    x, y = jwk.get("x"), jwk.get("y")
    if not isinstance(x, str) or not isinstance(y, str):
        raise EncodingError("JWK lacks x or y")
    xb, yb = b64url_decode(x), b64url_decode(y)
    if len(xb) != P256_COORDINATE_BYTES or len(yb) != P256_COORDINATE_BYTES:
        raise EncodingError("JWK coordinates are not 32 bytes")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + xb + yb)
    except ValueError as exc:
        raise EncodingError("JWK point is not on P-256") from exc


def jwk_thumbprint(public_key: ec.EllipticCurvePublicKey) -> str:
    """RFC 7638 §3: SHA-256 over the required members in lexicographic order, no whitespace; base64url."""
    jwk = jwk_from_public_key(public_key)
    canonical = json.dumps(
        {"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"], "y": jwk["y"]}, separators=(",", ":")
    )
    return b64url_encode(hashlib.sha256(canonical.encode("ascii")).digest())


def root_fingerprint(public_key: ec.EllipticCurvePublicKey) -> str:
    """The center root fingerprint: lowercase hex SHA-256 of the SubjectPublicKeyInfo DER."""
    return hashlib.sha256(spki_der(public_key)).hexdigest()


def device_id_from_spki(attestation_key_spki_der: bytes) -> str:
    """device_id from the attestation key's SubjectPublicKeyInfo DER."""
    digest = hashlib.sha256(attestation_key_spki_der).digest()[:20]
    return "dev_" + base64.b32encode(digest).decode("ascii").rstrip("=").lower()


def device_id_for(attestation_key: ec.EllipticCurvePublicKey) -> str:
    return device_id_from_spki(spki_der(attestation_key))


def is_device_id(value: str) -> bool:
    return bool(DEVICE_ID_RE.match(value))
