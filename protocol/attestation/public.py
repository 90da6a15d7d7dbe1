"""TPMT_PUBLIC (Part 2 §12.2.4-5): `parse_public(TPM2B_PUBLIC)` -> `TpmPublic`; `.name` = nameAlg ||
H(TPMT_PUBLIC) (Part 1 §16), `.public_key()` -> a cryptography key.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from protocol.attestation.structures import (
    ALG_AES,
    ALG_CFB,
    ALG_ECC,
    ALG_HMAC,
    ALG_KEYEDHASH,
    ALG_NULL,
    ALG_RSA,
    ALG_RSAES,
    ALG_XOR,
    CURVES,
    HASHES,
    HASHLIB,
    KDFS,
    SCHEMES_WITH_HASH,
    Reader,
    unwrap_tpm2b,
)
from protocol.errors import AttestationError

# --- TPMT_PUBLIC ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TpmPublic:
    """A parsed TPMT_PUBLIC (Part 2 §12.2.4). `raw` is its marshalled form, the input of the name."""

    raw: bytes
    type: int
    name_alg: int
    attributes: int
    auth_policy: bytes
    symmetric: tuple[int, int, int]  # (algorithm, keyBits, mode); (ALG_NULL, 0, 0) when none
    scheme: tuple[int, int]  # (scheme, hashAlg); (ALG_NULL, 0) when none
    curve: int = 0
    kdf: tuple[int, int] = (ALG_NULL, 0)
    key_bits: int = 0
    exponent: int = 0
    unique: tuple[bytes, ...] = ()  # ECC: (x, y); RSA: (modulus,); KEYEDHASH: (digest,)

    @property
    def name(self) -> bytes:
        """TPM name (Part 1 §16): nameAlg (2 bytes) || H_nameAlg(marshalled TPMT_PUBLIC)."""
        return struct.pack(">H", self.name_alg) + hashlib.new(HASHLIB[self.name_alg], self.raw).digest()

    def has(self, attributes: int) -> bool:
        return self.attributes & attributes == attributes

    def public_key(self) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
        """The public key as a cryptography object (ECC or RSA keys only)."""
        if self.type == ALG_ECC:
            curve, size = CURVES[self.curve]
            x, y = self.unique
            if len(x) != size or len(y) != size:
                raise AttestationError("ECC point coordinates have the wrong length")
            try:
                return ec.EllipticCurvePublicKey.from_encoded_point(curve, b"\x04" + x + y)
            except ValueError as exc:
                raise AttestationError("ECC point is not on the curve") from exc
        if self.type == ALG_RSA:
            exponent = self.exponent or 65537
            (modulus,) = self.unique
            try:
                return rsa.RSAPublicNumbers(exponent, int.from_bytes(modulus, "big")).public_key()
            except ValueError as exc:
                raise AttestationError("invalid RSA public key") from exc
        raise AttestationError("object has no asymmetric public key")

    def ec_public_key(self) -> ec.EllipticCurvePublicKey:
        key = self.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise AttestationError("not an ECC key")
        return key


def _sym_def(r: Reader) -> tuple[int, int, int]:
    algorithm = r.u16()
    if algorithm == ALG_NULL:
        return (ALG_NULL, 0, 0)
    if algorithm != ALG_AES:
        raise AttestationError(f"unsupported symmetric algorithm 0x{algorithm:04x}")
    bits, mode = r.u16(), r.u16()
    if bits not in (128, 192, 256) or mode != ALG_CFB:
        raise AttestationError("unsupported symmetric key size or mode")
    return (algorithm, bits, mode)


def _scheme(r: Reader) -> tuple[int, int]:
    scheme = r.u16()
    if scheme in (ALG_NULL, ALG_RSAES):
        return (scheme, 0)
    if scheme not in SCHEMES_WITH_HASH:
        raise AttestationError(f"unsupported scheme 0x{scheme:04x}")
    hash_alg = r.u16()
    if hash_alg not in HASHES:
        raise AttestationError(f"unsupported scheme hash 0x{hash_alg:04x}")
    return (scheme, hash_alg)


def _parse_tpmt_public(raw: bytes) -> TpmPublic:
    r = Reader(raw, "TPMT_PUBLIC")
    obj_type, name_alg, attributes = r.u16(), r.u16(), r.u32()
    if name_alg not in HASHES:
        raise AttestationError(f"unsupported nameAlg 0x{name_alg:04x}")
    auth_policy = r.tpm2b(64)
    if obj_type == ALG_ECC:
        symmetric, scheme, curve = _sym_def(r), _scheme(r), r.u16()
        if curve not in CURVES:
            raise AttestationError(f"unsupported curve 0x{curve:04x}")
        kdf_scheme = r.u16()
        kdf = (ALG_NULL, 0)
        if kdf_scheme != ALG_NULL:
            if kdf_scheme not in KDFS:
                raise AttestationError("unsupported ECC KDF")
            kdf = (kdf_scheme, r.u16())
        x, y = r.tpm2b(66), r.tpm2b(66)
        r.end()
        return TpmPublic(
            raw,
            obj_type,
            name_alg,
            attributes,
            auth_policy,
            symmetric,
            scheme,
            curve=curve,
            kdf=kdf,
            unique=(x, y),
        )
    if obj_type == ALG_RSA:
        symmetric, scheme, key_bits, exponent = _sym_def(r), _scheme(r), r.u16(), r.u32()
        if key_bits not in (2048, 3072, 4096):
            raise AttestationError(f"unsupported RSA key size {key_bits}")
        modulus = r.tpm2b(512)
        r.end()
        if len(modulus) not in (0, key_bits // 8):
            raise AttestationError("RSA modulus length does not match keyBits")
        return TpmPublic(
            raw,
            obj_type,
            name_alg,
            attributes,
            auth_policy,
            symmetric,
            scheme,
            key_bits=key_bits,
            exponent=exponent,
            unique=(modulus,),
        )
    if obj_type == ALG_KEYEDHASH:
        scheme_alg = r.u16()
        scheme = (ALG_NULL, 0)
        if scheme_alg == ALG_HMAC:
            scheme = (ALG_HMAC, r.u16())
        elif scheme_alg == ALG_XOR:
            scheme = (ALG_XOR, r.u16())
            r.u16()  # kdf
        elif scheme_alg != ALG_NULL:
            raise AttestationError("unsupported keyedHash scheme")
        digest = r.tpm2b(64)
        r.end()
        return TpmPublic(
            raw, obj_type, name_alg, attributes, auth_policy, (ALG_NULL, 0, 0), scheme, unique=(digest,)
        )
    raise AttestationError(f"unsupported object type 0x{obj_type:04x}")


def parse_public(tpm2b_public: bytes) -> TpmPublic:
    """Parse a marshalled TPM2B_PUBLIC (size || TPMT_PUBLIC), strictly."""
    return _parse_tpmt_public(unwrap_tpm2b(tpm2b_public, "TPM2B_PUBLIC"))
