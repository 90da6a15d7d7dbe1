"""TPM2_Certify evidence, verifier side (Part 3 §18.2; TPMS_ATTEST: Part 2 §10.12.12): `parse_attest`,
`CertifyEvidence`, `verify_certify`, and what the certified KEM and payment keys may do
(`check_kem_key`, `check_payment_key`). See the package docstring for what is and is not checked.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from protocol.attestation.public import TpmPublic, parse_public
from protocol.attestation.structures import (
    ALG_ECC,
    ALG_ECDSA,
    ALG_SHA256,
    ATTR_DECRYPT,
    ATTR_FIXED_PARENT,
    ATTR_FIXED_TPM,
    ATTR_NO_DA,
    ATTR_RESTRICTED,
    ATTR_SENSITIVE_DATA_ORIGIN,
    ATTR_SIGN,
    ATTR_USER_WITH_AUTH,
    ECC_NIST_P256,
    MAX_NAME,
    ST_ATTEST_CERTIFY,
    TPM_GENERATED_VALUE,
    Reader,
)
from protocol.b64 import b64url_decode, b64url_encode
from protocol.errors import AttestationError, EncodingError

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
    r = Reader(data, "TPMS_ATTEST")
    if r.u32() != TPM_GENERATED_VALUE:
        raise AttestationError("TPMS_ATTEST magic is not TPM_GENERATED_VALUE")
    if r.u16() != ST_ATTEST_CERTIFY:
        raise AttestationError("TPMS_ATTEST is not a TPM2_Certify result")
    signer, extra = r.tpm2b(MAX_NAME), r.tpm2b(64)
    clock, resets, restarts, safe = r.u64(), r.u32(), r.u32(), r.u8()
    if safe not in (0, 1):
        raise AttestationError("TPMS_CLOCK_INFO.safe is not a boolean")
    firmware = r.u64()
    name, qualified = r.tpm2b(MAX_NAME), r.tpm2b(MAX_NAME)
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


def _require_pin_bound(key: TpmPublic, what: str) -> None:
    """Usable only with its authValue (the PIN) and under dictionary-attack protection: userWithAuth set,
    noDA clear, no authPolicy besides."""
    if not key.has(ATTR_USER_WITH_AUTH):
        raise AttestationError(f"{what} is usable without its PIN (userWithAuth clear)")
    if key.attributes & ATTR_NO_DA:
        raise AttestationError(f"{what} is not protected by the dictionary-attack lockout")
    if key.auth_policy:
        raise AttestationError(f"{what} has an authPolicy besides its PIN")


def check_kem_key(key: TpmPublic) -> ec.EllipticCurvePublicKey:
    """The device KEM key: TPM-bound ECC P-256, an unrestricted decryption (ECDH) key that cannot sign,
    bound to the PIN like the payment key (a stolen board is then no ECDH oracle for the keys the PC saw)."""
    _require_tpm_bound_p256(key, "KEM key")
    if not key.has(ATTR_DECRYPT) or key.attributes & (ATTR_SIGN | ATTR_RESTRICTED):
        raise AttestationError("KEM key is not an unrestricted decryption key")
    _require_pin_bound(key, "KEM key")
    return key.ec_public_key()


def check_payment_key(key: TpmPublic) -> ec.EllipticCurvePublicKey:
    """The payment key: TPM-bound ECC P-256 ECDSA signing key, usable only with its authValue (the PIN) and
    under dictionary-attack protection: userWithAuth set, noDA clear, no authPolicy."""
    _require_tpm_bound_p256(key, "payment key")
    if not key.has(ATTR_SIGN) or key.attributes & (ATTR_DECRYPT | ATTR_RESTRICTED):
        raise AttestationError("payment key is not an unrestricted signing key")
    _require_pin_bound(key, "payment key")
    return key.ec_public_key()
