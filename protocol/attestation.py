"""TPM attestation, verifier side, in pure software (the center has no TSS): TPM2_Certify evidence, the
MakeCredential half of credential activation, and the EK certificate.

Everything here follows TPM 2.0 Library Part 1 (Architecture) and Part 2 (Structures); all integers are
big-endian and every parser is strict (known algorithms only, exact lengths, no trailing bytes).

- `parse_public(TPM2B_PUBLIC)` -> `TpmPublic` (Part 2 §12.2.4-5); `.name` = nameAlg || H(TPMT_PUBLIC) (Part 1
  §16), `.public_key()` -> a cryptography key.
- `parse_attest(TPMS_ATTEST)` -> `Attest` (Part 2 §10.12.12), TPM_ST_ATTEST_CERTIFY only.
- `verify_certify(evidence, nonce=...)` checks a TPM2_Certify (Part 3 §18.2): the attestation key is a
  restricted ECDSA P-256 signing key that lives only in its TPM (fixedTPM), its signature over the TPMS_ATTEST
  bytes, magic and type, extraData == the verifier's nonce, and that the certified name is the name of the
  presented public area. `check_kem_key` / `check_payment_key` then judge what the certified key may do.
  Not checked: qualifiedSigner (it depends on the AK's parent chain) and the clock fields (obfuscated in the
  owner hierarchy); freshness comes from the nonce.
- `make_credential(ek_public, object_name, secret)` (Part 1 §24; Part 3 §12.6 TPM2_MakeCredential): a random
  seed RSA-OAEP-encrypted to the EK (label "IDENTITY\\0", hash = the EK's nameAlg), symmetric key =
  KDFa(nameAlg, seed, "STORAGE", name, "", 128), AES-128-CFB (zero IV) over TPM2B_DIGEST(secret), HMAC key =
  KDFa(nameAlg, seed, "INTEGRITY", "", "", digest bits), outerHMAC = HMAC(encIdentity || name). Returns the
  marshalled TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET that TPM2_ActivateCredential takes.
- `verify_ek_certificate(der, roots, intermediates, now=...)`: the chain checked with cryptography's X.509
  verifier. EK certificates are not WebPKI certificates (TCG EK Credential Profile: EKU tcg-kp-EKCertificate
  2.23.133.8.1, a critical directoryName SAN naming the TPM vendor, often a meaningless subject), so the
  end-entity extension policy is permit-all and we then require ourselves: an RSA-2048 key, keyUsage
  keyEncipherment, and EKU 2.23.133.8.1 when an EKU is present. CA certificates keep the WebPKI CA rules
  (basicConstraints CA:TRUE, keyCertSign); swtpm_localca's CAs pass them.
- `check_ek_public(ek_public, certificate)`: the EK's TPM2B_PUBLIC is an RSA-2048 restricted decryption key
  (fixedTPM, fixedParent, sensitiveDataOrigin, adminWithPolicy, AES-128-CFB, SHA-256) whose modulus and
  exponent are the certificate's key.

Every failure raises `AttestationError`.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.x509.oid import ObjectIdentifier
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError

from protocol.b64 import b64url_decode, b64url_encode
from protocol.errors import AttestationError, EncodingError

__all__ = [
    "ATTR_ADMIN_WITH_POLICY",
    "ATTR_DECRYPT",
    "ATTR_FIXED_PARENT",
    "ATTR_FIXED_TPM",
    "ATTR_NO_DA",
    "ATTR_RESTRICTED",
    "ATTR_SENSITIVE_DATA_ORIGIN",
    "ATTR_SIGN",
    "ATTR_USER_WITH_AUTH",
    "Attest",
    "CertifyEvidence",
    "TpmPublic",
    "check_ek_public",
    "check_kem_key",
    "check_payment_key",
    "ek_public_key_from_certificate",
    "make_credential",
    "parse_attest",
    "parse_public",
    "verify_certify",
    "verify_ek_certificate",
]

# Part 2 §6.3 TPM_ALG_ID
ALG_RSA = 0x0001
ALG_SHA1 = 0x0004
ALG_HMAC = 0x0005
ALG_AES = 0x0006
ALG_KEYEDHASH = 0x0008
ALG_XOR = 0x000A
ALG_SHA256 = 0x000B
ALG_SHA384 = 0x000C
ALG_SHA512 = 0x000D
ALG_NULL = 0x0010
ALG_RSASSA = 0x0014
ALG_RSAES = 0x0015
ALG_RSAPSS = 0x0016
ALG_OAEP = 0x0017
ALG_ECDSA = 0x0018
ALG_ECDH = 0x0019
ALG_ECDAA = 0x001A
ALG_ECSCHNORR = 0x001C
ALG_KDF1_SP800_56A = 0x0020
ALG_KDF2 = 0x0021
ALG_KDF1_SP800_108 = 0x0022
ALG_ECC = 0x0023
ALG_SYMCIPHER = 0x0025
ALG_CFB = 0x0043
# Part 2 §6.4 TPM_ECC_CURVE
ECC_NIST_P256 = 0x0003
ECC_NIST_P384 = 0x0004
# Part 2 §8.3 TPMA_OBJECT
ATTR_FIXED_TPM = 1 << 1
ATTR_ST_CLEAR = 1 << 2
ATTR_FIXED_PARENT = 1 << 4
ATTR_SENSITIVE_DATA_ORIGIN = 1 << 5
ATTR_USER_WITH_AUTH = 1 << 6
ATTR_ADMIN_WITH_POLICY = 1 << 7
ATTR_NO_DA = 1 << 10
ATTR_ENCRYPTED_DUPLICATION = 1 << 11
ATTR_RESTRICTED = 1 << 16
ATTR_DECRYPT = 1 << 17
ATTR_SIGN = 1 << 18
# Part 2 §6.2 TPM_GENERATED_VALUE, §6.9 TPM_ST_ATTEST_CERTIFY
TPM_GENERATED_VALUE = 0xFF544347
ST_ATTEST_CERTIFY = 0x8017

_HASHES: dict[int, tuple[int, type[hashes.HashAlgorithm]]] = {
    ALG_SHA1: (20, hashes.SHA1),
    ALG_SHA256: (32, hashes.SHA256),
    ALG_SHA384: (48, hashes.SHA384),
    ALG_SHA512: (64, hashes.SHA512),
}
_HASHLIB = {ALG_SHA1: "sha1", ALG_SHA256: "sha256", ALG_SHA384: "sha384", ALG_SHA512: "sha512"}
_SCHEMES_WITH_HASH = {ALG_RSASSA, ALG_RSAPSS, ALG_OAEP, ALG_ECDSA, ALG_ECDH, ALG_ECSCHNORR, ALG_HMAC}
_KDFS = {ALG_KDF1_SP800_56A, ALG_KDF2, ALG_KDF1_SP800_108}
_CURVES: dict[int, tuple[ec.EllipticCurve, int]] = {
    ECC_NIST_P256: (ec.SECP256R1(), 32),
    ECC_NIST_P384: (ec.SECP384R1(), 48),
}
_MAX_NAME = 2 + 64
TCG_KP_EK_CERTIFICATE = ObjectIdentifier("2.23.133.8.1")
# TPM2_PolicySecret(TPM_RH_ENDORSEMENT) digest: the authPolicy of the TCG default (low-range) EK templates
# (TCG EK Credential Profile 2.x, B.3.3).
EK_POLICY_SHA256 = bytes.fromhex("837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa")
_EK_ATTRS = (
    ATTR_FIXED_TPM | ATTR_FIXED_PARENT | ATTR_SENSITIVE_DATA_ORIGIN | ATTR_ADMIN_WITH_POLICY | ATTR_RESTRICTED
) | ATTR_DECRYPT


# --- a strict big-endian reader ---------------------------------------------------------------------------


class _Reader:
    def __init__(self, data: bytes, what: str) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._what = what

    def _take(self, n: int) -> bytes:
        if self._pos + n > len(self._data):
            raise AttestationError(f"{self._what}: truncated")
        chunk = bytes(self._data[self._pos : self._pos + n])
        self._pos += n
        return chunk

    def u8(self) -> int:
        return self._take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack(">H", self._take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self._take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack(">Q", self._take(8))[0])

    def tpm2b(self, max_size: int | None = None) -> bytes:
        size = self.u16()
        if max_size is not None and size > max_size:
            raise AttestationError(f"{self._what}: field of {size} bytes exceeds {max_size}")
        return self._take(size)

    def end(self) -> None:
        if self._pos != len(self._data):
            raise AttestationError(f"{self._what}: {len(self._data) - self._pos} trailing bytes")


def _unwrap_tpm2b(data: bytes, what: str) -> bytes:
    r = _Reader(data, what)
    inner = r.tpm2b()
    r.end()
    return inner


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
        return struct.pack(">H", self.name_alg) + hashlib.new(_HASHLIB[self.name_alg], self.raw).digest()

    def has(self, attributes: int) -> bool:
        return self.attributes & attributes == attributes

    def public_key(self) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
        """The public key as a cryptography object (ECC or RSA keys only)."""
        if self.type == ALG_ECC:
            curve, size = _CURVES[self.curve]
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


def _sym_def(r: _Reader) -> tuple[int, int, int]:
    algorithm = r.u16()
    if algorithm == ALG_NULL:
        return (ALG_NULL, 0, 0)
    if algorithm != ALG_AES:
        raise AttestationError(f"unsupported symmetric algorithm 0x{algorithm:04x}")
    bits, mode = r.u16(), r.u16()
    if bits not in (128, 192, 256) or mode != ALG_CFB:
        raise AttestationError("unsupported symmetric key size or mode")
    return (algorithm, bits, mode)


def _scheme(r: _Reader) -> tuple[int, int]:
    scheme = r.u16()
    if scheme in (ALG_NULL, ALG_RSAES):
        return (scheme, 0)
    if scheme not in _SCHEMES_WITH_HASH:
        raise AttestationError(f"unsupported scheme 0x{scheme:04x}")
    hash_alg = r.u16()
    if hash_alg not in _HASHES:
        raise AttestationError(f"unsupported scheme hash 0x{hash_alg:04x}")
    return (scheme, hash_alg)


def _parse_tpmt_public(raw: bytes) -> TpmPublic:
    r = _Reader(raw, "TPMT_PUBLIC")
    obj_type, name_alg, attributes = r.u16(), r.u16(), r.u32()
    if name_alg not in _HASHES:
        raise AttestationError(f"unsupported nameAlg 0x{name_alg:04x}")
    auth_policy = r.tpm2b(64)
    if obj_type == ALG_ECC:
        symmetric, scheme, curve = _sym_def(r), _scheme(r), r.u16()
        if curve not in _CURVES:
            raise AttestationError(f"unsupported curve 0x{curve:04x}")
        kdf_scheme = r.u16()
        kdf = (ALG_NULL, 0)
        if kdf_scheme != ALG_NULL:
            if kdf_scheme not in _KDFS:
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
    return _parse_tpmt_public(_unwrap_tpm2b(tpm2b_public, "TPM2B_PUBLIC"))


# --- TPMS_ATTEST ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attest:
    """A parsed TPMS_ATTEST of type TPM_ST_ATTEST_CERTIFY (Part 2 §10.12.12, §10.12.3)."""

    qualified_signer: bytes
    extra_data: bytes
    clock: int
    reset_count: int
    restart_count: int
    safe: bool
    firmware_version: int
    certified_name: bytes
    certified_qualified_name: bytes


def parse_attest(data: bytes) -> Attest:
    """Parse the marshalled TPMS_ATTEST that TPM2_Certify signed (the content of its TPM2B_ATTEST)."""
    r = _Reader(data, "TPMS_ATTEST")
    if r.u32() != TPM_GENERATED_VALUE:
        raise AttestationError("TPMS_ATTEST magic is not TPM_GENERATED_VALUE")
    if r.u16() != ST_ATTEST_CERTIFY:
        raise AttestationError("TPMS_ATTEST is not a TPM2_Certify result")
    signer, extra = r.tpm2b(_MAX_NAME), r.tpm2b(64)
    clock, resets, restarts, safe = r.u64(), r.u32(), r.u32(), r.u8()
    if safe not in (0, 1):
        raise AttestationError("TPMS_CLOCK_INFO.safe is not a boolean")
    firmware = r.u64()
    name, qualified = r.tpm2b(_MAX_NAME), r.tpm2b(_MAX_NAME)
    r.end()
    return Attest(signer, extra, clock, resets, restarts, bool(safe), firmware, name, qualified)


# --- TPM2_Certify evidence --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertifyEvidence:
    """What TPM2_Certify produced: the signed TPMS_ATTEST bytes, the AK's signature (raw r||s), and the
    marshalled TPM2B_PUBLIC of the certified key and of the attestation key. Public; JSON-serialisable."""

    attest: bytes
    signature: bytes
    certified_public: bytes
    ak_public: bytes

    def to_json(self) -> dict[str, str]:
        return {
            "attest": b64url_encode(self.attest),
            "signature": b64url_encode(self.signature),
            "certified_public": b64url_encode(self.certified_public),
            "ak_public": b64url_encode(self.ak_public),
        }

    @classmethod
    def from_json(cls, obj: object) -> CertifyEvidence:
        if not isinstance(obj, dict) or set(obj) != {"attest", "signature", "certified_public", "ak_public"}:
            raise AttestationError(
                "certify evidence must have exactly attest, signature, certified_public, ak_public"
            )
        try:
            fields = {k: b64url_decode(v) for k, v in obj.items() if isinstance(v, str)}
        except EncodingError as exc:
            raise AttestationError("certify evidence is not base64url") from exc
        if len(fields) != 4:
            raise AttestationError("certify evidence members must be strings")
        return cls(**fields)

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True).encode("ascii")

    @classmethod
    def from_bytes(cls, data: bytes) -> CertifyEvidence:
        try:
            return cls.from_json(json.loads(data))
        except (ValueError, UnicodeDecodeError) as exc:
            raise AttestationError("certify evidence is not JSON") from exc


def check_attestation_key(ak: TpmPublic) -> ec.EllipticCurvePublicKey:
    """The AK must be a restricted, TPM-bound ECDSA P-256 / SHA-256 signing key (never a decryption key)."""
    if ak.type != ALG_ECC or ak.curve != ECC_NIST_P256:
        raise AttestationError("attestation key is not ECC P-256")
    required = ATTR_FIXED_TPM | ATTR_FIXED_PARENT | ATTR_SENSITIVE_DATA_ORIGIN | ATTR_RESTRICTED | ATTR_SIGN
    if not ak.has(required) or ak.attributes & ATTR_DECRYPT:
        raise AttestationError("attestation key is not a restricted, TPM-bound signing key")
    if ak.scheme != (ALG_ECDSA, ALG_SHA256):
        raise AttestationError("attestation key scheme is not ECDSA/SHA-256")
    return ak.ec_public_key()


def _raw_signature_to_der(signature: bytes) -> bytes:
    if len(signature) != 64:
        raise AttestationError("signature is not 64 bytes r||s")
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    return encode_dss_signature(r, s)


def verify_certify(evidence: CertifyEvidence, *, nonce: bytes, ak_public: bytes | None = None) -> TpmPublic:
    """Verify TPM2_Certify evidence (Part 3 §18.2) and return the certified key's public area.

    `nonce` is the verifier's fresh qualifyingData; `ak_public`, when given, pins the attestation key
    (its marshalled TPM2B_PUBLIC must equal the evidence's). The caller then judges the key with
    `check_kem_key` / `check_payment_key`.
    """
    if ak_public is not None and not hmac.compare_digest(ak_public, evidence.ak_public):
        raise AttestationError("certify evidence is signed by another attestation key")
    ak = parse_public(evidence.ak_public)
    ak_key = check_attestation_key(ak)
    try:
        ak_key.verify(_raw_signature_to_der(evidence.signature), evidence.attest, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise AttestationError("certify signature does not verify") from exc
    attest = parse_attest(evidence.attest)
    if not hmac.compare_digest(attest.extra_data, nonce):
        raise AttestationError("certify evidence answers another nonce")
    certified = parse_public(evidence.certified_public)
    if not hmac.compare_digest(attest.certified_name, certified.name):
        raise AttestationError("certified name does not match the presented public key")
    return certified


def _require_tpm_bound_p256(key: TpmPublic, what: str) -> None:
    if key.type != ALG_ECC or key.curve != ECC_NIST_P256 or key.name_alg != ALG_SHA256:
        raise AttestationError(f"{what} is not an ECC P-256 key with nameAlg SHA-256")
    if not key.has(ATTR_FIXED_TPM | ATTR_FIXED_PARENT | ATTR_SENSITIVE_DATA_ORIGIN):
        raise AttestationError(f"{what} was not generated in, or can leave, its TPM")


def check_kem_key(key: TpmPublic) -> ec.EllipticCurvePublicKey:
    """The device KEM key: TPM-bound ECC P-256, an unrestricted decryption (ECDH) key that cannot sign."""
    _require_tpm_bound_p256(key, "KEM key")
    if not key.has(ATTR_DECRYPT) or key.attributes & (ATTR_SIGN | ATTR_RESTRICTED):
        raise AttestationError("KEM key is not an unrestricted decryption key")
    return key.ec_public_key()


def check_payment_key(key: TpmPublic) -> ec.EllipticCurvePublicKey:
    """The payment key: TPM-bound ECC P-256 ECDSA signing key, usable only with its authValue (the PIN) and
    under dictionary-attack protection: userWithAuth set, noDA clear, no authPolicy."""
    _require_tpm_bound_p256(key, "payment key")
    if not key.has(ATTR_SIGN | ATTR_USER_WITH_AUTH) or key.attributes & (ATTR_DECRYPT | ATTR_RESTRICTED):
        raise AttestationError("payment key is not an unrestricted signing key with user auth")
    if key.attributes & ATTR_NO_DA:
        raise AttestationError("payment key is not protected by the dictionary-attack lockout")
    if key.auth_policy:
        raise AttestationError("payment key has an authPolicy besides its PIN")
    return key.ec_public_key()


# --- MakeCredential (Part 1 §24) --------------------------------------------------------------------------


def kdfa(hash_alg: int, key: bytes, label: bytes, context_u: bytes, context_v: bytes, bits: int) -> bytes:
    """KDFa (Part 1 §11.4.10.2): SP 800-108 counter-mode HMAC; label is NUL-terminated on the wire."""
    if hash_alg not in _HASHLIB or bits % 8:
        raise AttestationError("unsupported KDFa parameters")
    name = _HASHLIB[hash_alg]
    out = b""
    counter = 1
    while len(out) < bits // 8:
        msg = struct.pack(">I", counter) + label + b"\x00" + context_u + context_v + struct.pack(">I", bits)
        out += hmac.new(key, msg, name).digest()
        counter += 1
    return out[: bits // 8]


def _make_credential_from_parts(
    ek: TpmPublic, object_name: bytes, secret: bytes, seed: bytes, encrypted_seed: bytes
) -> tuple[bytes, bytes]:
    digest_size = _HASHES[ek.name_alg][0]
    if not 0 < len(secret) <= digest_size:
        raise AttestationError(f"credential secret must be 1..{digest_size} bytes")
    algorithm, bits, mode = ek.symmetric
    if algorithm != ALG_AES or mode != ALG_CFB:
        raise AttestationError("EK has no AES-CFB symmetric definition")
    sym_key = kdfa(ek.name_alg, seed, b"STORAGE", object_name, b"", bits)
    encryptor = Cipher(algorithms.AES(sym_key), CFB(b"\x00" * 16)).encryptor()
    enc_identity = encryptor.update(struct.pack(">H", len(secret)) + secret) + encryptor.finalize()
    hmac_key = kdfa(ek.name_alg, seed, b"INTEGRITY", b"", b"", digest_size * 8)
    outer_hmac = hmac.new(hmac_key, enc_identity + object_name, _HASHLIB[ek.name_alg]).digest()
    id_object = struct.pack(">H", len(outer_hmac)) + outer_hmac + enc_identity
    return (
        struct.pack(">H", len(id_object)) + id_object,
        struct.pack(">H", len(encrypted_seed)) + encrypted_seed,
    )


def make_credential(ek_public: bytes, object_name: bytes, secret: bytes) -> tuple[bytes, bytes]:
    """TPM2_MakeCredential in software for an RSA EK (marshalled TPM2B_PUBLIC) and an object name.

    Returns (credential_blob, encrypted_secret): marshalled TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET.
    Only the TPM holding the EK private key, with an object of `object_name` loaded, recovers `secret`.
    """
    ek = parse_public(ek_public)
    if ek.type != ALG_RSA or not ek.has(ATTR_RESTRICTED | ATTR_DECRYPT):
        raise AttestationError("EK is not a restricted RSA decryption key")
    name_alg = int.from_bytes(object_name[:2], "big")
    if name_alg not in _HASHES or len(object_name) != 2 + _HASHES[name_alg][0]:
        raise AttestationError("object name is not nameAlg || digest")
    size, hash_cls = _HASHES[ek.name_alg]
    seed = os.urandom(size)
    key = ek.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    encrypted_seed = key.encrypt(
        seed, padding.OAEP(mgf=padding.MGF1(hash_cls()), algorithm=hash_cls(), label=b"IDENTITY\x00")
    )
    return _make_credential_from_parts(ek, object_name, secret, seed, encrypted_seed)


# --- EK certificate ---------------------------------------------------------------------------------------


def verify_ek_certificate(
    certificate_der: bytes,
    roots: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate] = (),
    *,
    now: datetime.datetime,
) -> x509.Certificate:
    """Check an EK certificate's chain up to one of `roots` at time `now`; return the parsed certificate.

    See the module docstring for the policy (EK certificates need a permit-all end-entity extension policy).
    """
    try:
        cert = x509.load_der_x509_certificate(certificate_der)
    except ValueError as exc:
        raise AttestationError("EK certificate is not DER X.509") from exc
    if not roots:
        raise AttestationError("no trust roots configured for EK certificates")
    try:
        verifier = (
            PolicyBuilder()
            .store(Store(list(roots)))
            .time(now)
            .extension_policies(
                ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all()
            )
            .build_client_verifier()
        )
        verifier.verify(cert, list(intermediates))
    except (VerificationError, ValueError) as exc:
        raise AttestationError(f"EK certificate chain does not verify: {exc}") from exc
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size != 2048:
        raise AttestationError("EK certificate does not hold an RSA-2048 key")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound as exc:
        raise AttestationError("EK certificate has no keyUsage") from exc
    if not usage.key_encipherment:
        raise AttestationError("EK certificate keyUsage lacks keyEncipherment")
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if eku is not None and TCG_KP_EK_CERTIFICATE not in list(eku):
        raise AttestationError("EK certificate EKU lacks tcg-kp-EKCertificate")
    return cert


def ek_public_key_from_certificate(certificate: x509.Certificate) -> rsa.RSAPublicKey:
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise AttestationError("EK certificate does not hold an RSA key")
    return key


def check_ek_public(ek_public: bytes, certificate: x509.Certificate) -> TpmPublic:
    """The EK's TPM2B_PUBLIC must be a TCG-style RSA-2048 EK and hold exactly the certificate's key."""
    ek = parse_public(ek_public)
    if ek.type != ALG_RSA or ek.key_bits != 2048 or ek.name_alg != ALG_SHA256:
        raise AttestationError("EK is not RSA-2048 with nameAlg SHA-256")
    if ek.attributes & (_EK_ATTRS | ATTR_SIGN | ATTR_USER_WITH_AUTH) != _EK_ATTRS:
        raise AttestationError("EK attributes are not those of a TCG endorsement key")
    if ek.symmetric != (ALG_AES, 128, ALG_CFB):
        raise AttestationError("EK symmetric definition is not AES-128-CFB")
    if not hmac.compare_digest(ek.auth_policy, EK_POLICY_SHA256):
        raise AttestationError("EK authPolicy is not PolicySecret(TPM_RH_ENDORSEMENT)")
    cert_numbers = ek_public_key_from_certificate(certificate).public_numbers()
    key = ek.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    if key.public_numbers() != cert_numbers:
        raise AttestationError("EK public key does not match the EK certificate")
    return ek
