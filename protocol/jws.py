"""JWS compact serialization (RFC 7515 §7.1), ES256 only, raw R||S signatures (RFC 7518 §3.4).

`sign()` takes a `Signer` callback so the TPM can sign; `verify()` is strict: exactly the header members
alg/typ/kid, alg ES256, the expected typ, a kid that names one of the given keys (RFC 7638 thumbprint), a
64-byte signature with 0 < r, s < n, a payload that parses into the typ's model, and `exp` judged against a
required `now` (no clock is read here). Every failure is a `JwsError`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Protocol, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from pydantic import ValidationError

from protocol._ecdsa import P256_ORDER, low_s
from protocol.b64 import b64url_decode, b64url_encode
from protocol.errors import EncodingError, JwsError, JwsExpired, JwsWrongAudience
from protocol.keys import jwk_thumbprint
from protocol.messages import SignedPayload

P = TypeVar("P", bound=SignedPayload)

MAX_TOKEN_LENGTH = 65536
#: Arrays and objects nested deeper than this are refused before parsing (ours nest 3 deep; `[[[[...` would
#: otherwise raise RecursionError in the JSON decoder).
MAX_JSON_DEPTH = 32
_HEADER_MEMBERS = {"alg", "typ", "kid"}
#: How many key objects `_kid` remembers the thumbprint of (the center: its signing keys and the device keys
#: of `stored_public_key`'s LRU; a device: its few keys).
KID_CACHE = 4096
_kids: dict[int, tuple[ec.EllipticCurvePublicKey, str]] = {}


def _kid(key: ec.EllipticCurvePublicKey) -> str:
    """`jwk_thumbprint(key)`, remembered per key object: an ECPublicKey is immutable but not hashable, so by
    id(), with the object itself held (its id cannot be reused while it is remembered) and checked by
    identity. A different object with the same key is computed afresh (the same thumbprint); nothing about
    trust is cached, only this pure function of the key."""
    found = _kids.get(id(key))
    if found is not None and found[0] is key:
        return found[1]
    kid = jwk_thumbprint(key)
    if len(_kids) >= KID_CACHE:
        _kids.clear()
    _kids[id(key)] = (key, kid)
    return kid


class Signer(Protocol):
    """Anything that signs with a P-256 key and returns raw r||s (64 bytes): software or the TPM."""

    def public_key(self) -> ec.EllipticCurvePublicKey: ...

    def sign(self, data: bytes) -> bytes:
        """ECDSA P-256 / SHA-256 over `data`; returns r||s, each 32 bytes big-endian."""
        ...


class SoftwareSigner:
    """A Signer over a private key held in memory (the center's keys, tests)."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise ValueError("ES256 needs a P-256 key")
        self._key = private_key
        self._public = private_key.public_key()  # one object: `sign` finds its kid in `_kid`'s cache

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    def sign(self, data: bytes) -> bytes:
        r, s = decode_dss_signature(self._key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=False, ensure_ascii=True).encode("ascii")


def sign(payload: SignedPayload, signer: Signer) -> str:
    """Serialize `payload` as a compact JWS whose header names its typ and the signer's kid."""
    if not payload.TYP:
        raise TypeError("payload has no JWS typ")
    header = {"alg": "ES256", "typ": payload.TYP, "kid": _kid(signer.public_key())}
    body = payload.model_dump(mode="json", exclude_none=True)
    signing_input = b64url_encode(_json_bytes(header)) + "." + b64url_encode(_json_bytes(body))
    signature = low_s(signer.sign(signing_input.encode("ascii")))
    if len(signature) != 64:
        raise ValueError("signer returned a signature that is not 64 bytes")
    return signing_input + "." + b64url_encode(signature)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise JwsError(f"duplicate JSON member {key!r}")
        out[key] = value
    return out


def _nesting_depth(text: str) -> int:
    """The deepest nesting of JSON arrays and objects in `text`, brackets inside strings not counted."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return 0  # cannot exceed the bound: skip the character scan
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                break
        elif char in "]}":
            depth -= 1
    return deepest


def _parse_json_object(data: bytes) -> dict[str, Any]:
    try:
        text = data.decode("utf-8")
        if _nesting_depth(text) > MAX_JSON_DEPTH:
            raise JwsError("segment is nested too deeply")
        obj = json.loads(text, object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise JwsError("segment is not JSON") from exc
    if not isinstance(obj, dict):
        raise JwsError("segment is not a JSON object")
    return obj


def _split(token: str) -> tuple[dict[str, Any], bytes, bytes, bytes]:
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        raise JwsError("not a compact JWS of acceptable size")
    parts = token.split(".")
    if len(parts) != 3:
        raise JwsError("a compact JWS has three parts")
    try:
        header_raw, payload_raw, signature = (b64url_decode(p) for p in parts)
    except EncodingError as exc:
        raise JwsError("a JWS part is not base64url") from exc
    header = _parse_json_object(header_raw)
    signing_input = (parts[0] + "." + parts[1]).encode("ascii")
    return header, payload_raw, signature, signing_input


def unverified_header(token: str) -> dict[str, Any]:
    """The protected header, unchecked: for routing only (which key set to try), never for trust."""
    return _split(token)[0]


def unverified_member(token: str, member: str) -> str:
    """A non-empty string member of the payload, unchecked: for routing only (which stored answer, which key
    set), never for trust. Raises JwsError for anything that is not a compact JWS with such a member."""
    value = _parse_json_object(_split(token)[1]).get(member)
    if not isinstance(value, str) or not value:
        raise JwsError(f"the payload has no {member}")
    return value


def _check_signature(key: ec.EllipticCurvePublicKey, signature: bytes, signing_input: bytes) -> None:
    if len(signature) != 64:
        raise JwsError("ES256 signature is not 64 bytes")
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    if not (0 < r < P256_ORDER and 0 < s < P256_ORDER):
        raise JwsError("ES256 signature out of range")
    try:
        key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise JwsError("bad signature") from exc


def verify(
    token: str,
    kind: type[P],
    *,
    keys: ec.EllipticCurvePublicKey | Iterable[ec.EllipticCurvePublicKey],
    now: int,
    audience: str | None = None,
) -> P:
    """Verify `token` as a message of `kind`, signed by one of `keys`, not expired at `now`.

    `audience`, when given, must equal the payload's device_id. Raises JwsError (JwsExpired, JwsWrongAudience
    only after the signature and the payload are known good).
    """
    header, payload_raw, signature, signing_input = _split(token)
    if set(header) != _HEADER_MEMBERS:
        raise JwsError("JWS header must hold exactly alg, typ and kid")
    if header["alg"] != "ES256":
        raise JwsError("JWS alg must be ES256")
    if header["typ"] != kind.TYP:
        raise JwsError(f"JWS typ is not {kind.TYP}")
    candidates = [keys] if isinstance(keys, ec.EllipticCurvePublicKey) else list(keys)
    key = next((k for k in candidates if _kid(k) == header["kid"]), None)
    if key is None:
        raise JwsError("JWS kid names no trusted key")
    _check_signature(key, signature, signing_input)
    # Rejects duplicate members before pydantic sees the payload; `v` is required on the wire (the model
    # defaults it only for construction).
    if "v" not in _parse_json_object(payload_raw):
        raise JwsError(f"{kind.TYP} payload lacks v")
    try:
        payload = kind.model_validate_json(payload_raw)
    except ValidationError as exc:
        raise JwsError(f"{kind.TYP} payload is malformed") from exc
    expiry = payload.expiry()
    if expiry is not None and not now < expiry:
        raise JwsExpired(f"{kind.TYP} expired")
    if audience is not None and payload.audience() != audience:
        raise JwsWrongAudience(f"{kind.TYP} is addressed to another device")
    return payload
