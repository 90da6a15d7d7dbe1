"""Raw HPKE primitives (RFC 9180), one suite: DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-128-GCM.

Private: only `protocol.hpke` (the safe recipe) and the tests import this module; HTTP handlers never do.
Everything here is deterministic given its inputs, so RFC 9180 Appendix A.3 pins every intermediate value.

The recipient side touches its private key only through `public_key()` and `exchange(ec.ECDH(), peer)`, so
a key whose ECDH runs inside a TPM (TPM2_ECDH_ZGen) can decapsulate without ever exporting its private part.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Protocol

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

# RFC 9180 §7.1 (KEM), §7.2 (KDF), §7.3 (AEAD) identifiers and sizes.
KEM_ID = 0x0010  # DHKEM(P-256, HKDF-SHA256)
KDF_ID = 0x0001  # HKDF-SHA256
AEAD_ID = 0x0001  # AES-128-GCM
MODE_BASE = 0x00  # RFC 9180 §5.1, Table 1
N_SECRET = 32
N_ENC = 65  # uncompressed SEC1 point
N_PK = 65
N_DH = 32
N_SK = 32
N_K = 16
N_N = 12
N_H = 32
N_T = 16

#: RFC 9180 §4.1: suite_id of the KEM's own ExtractAndExpand.
KEM_SUITE_ID = b"KEM" + struct.pack(">H", KEM_ID)
#: RFC 9180 §5.1: suite_id of the key schedule.
HPKE_SUITE_ID = b"HPKE" + struct.pack(">HHH", KEM_ID, KDF_ID, AEAD_ID)
_VERSION_LABEL = b"HPKE-v1"
_CURVE = ec.SECP256R1()


class RecipientKey(Protocol):
    """An HPKE recipient. cryptography's `EllipticCurvePrivateKey` satisfies it; so does the TPM's KEM key."""

    def public_key(self) -> ec.EllipticCurvePublicKey: ...

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes: ...


class InvalidEncError(ValueError):
    """The encapsulated key is not an uncompressed P-256 point (RFC 9180 §7.1.1, §7.1.4)."""


def labeled_extract(salt: bytes, label: bytes, ikm: bytes, suite_id: bytes) -> bytes:
    """RFC 9180 §4: LabeledExtract(salt, label, ikm) = Extract(salt, "HPKE-v1" || suite_id || label || ikm).

    An empty salt stands for Nh zero bytes (RFC 5869 §2.2); HMAC pads short keys with zeros: the same key.
    """
    return HKDF.extract(hashes.SHA256(), salt, _VERSION_LABEL + suite_id + label + ikm)


def labeled_expand(prk: bytes, label: bytes, info: bytes, length: int, suite_id: bytes) -> bytes:
    """RFC 9180 §4: LabeledExpand(prk, label, info, L).

    = Expand(prk, I2OSP(L, 2) || "HPKE-v1" || suite_id || label || info, L).
    """
    labeled_info = struct.pack(">H", length) + _VERSION_LABEL + suite_id + label + info
    return HKDFExpand(hashes.SHA256(), length, labeled_info).derive(prk)


def serialize_public_key(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """RFC 9180 §7.1.1 SerializePublicKey: the 65-byte uncompressed SEC1 point."""
    if not isinstance(public_key.curve, ec.SECP256R1):
        raise ValueError("HPKE suite 0x0010 needs a P-256 key")
    return public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def deserialize_public_key(enc: bytes) -> ec.EllipticCurvePublicKey:
    """RFC 9180 §7.1.1 DeserializePublicKey, §7.1.4 validation: 65 bytes, 0x04, a point on P-256."""
    if len(enc) != N_ENC or enc[0] != 0x04:
        raise InvalidEncError("enc is not a 65-byte uncompressed point")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, enc)
    except ValueError as exc:
        raise InvalidEncError("enc is not a point on P-256") from exc


def derive_key_pair(ikm: bytes) -> ec.EllipticCurvePrivateKey:
    """RFC 9180 §7.1.3 DeriveKeyPair for P-256 (rejection sampling, bitmask 0xff); for the vectors only."""
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    dkp_prk = labeled_extract(b"", b"dkp_prk", ikm, KEM_SUITE_ID)
    for counter in range(256):
        candidate = int.from_bytes(
            labeled_expand(dkp_prk, b"candidate", bytes([counter]), N_SK, KEM_SUITE_ID), "big"
        )
        if 0 < candidate < order:
            return ec.derive_private_key(candidate, _CURVE)
    raise ValueError("DeriveKeyPairError")  # pragma: no cover - probability 2^-8192


def _extract_and_expand(dh: bytes, kem_context: bytes) -> bytes:
    """RFC 9180 §4.1 ExtractAndExpand: the KEM shared secret from the DH output and enc || pkRm."""
    if len(dh) != N_DH:
        raise ValueError("ECDH output must be the 32-byte x-coordinate")
    eae_prk = labeled_extract(b"", b"eae_prk", dh, KEM_SUITE_ID)
    return labeled_expand(eae_prk, b"shared_secret", kem_context, N_SECRET, KEM_SUITE_ID)


def encap_from_parts(
    recipient: ec.EllipticCurvePublicKey, ephemeral_private_key: ec.EllipticCurvePrivateKey
) -> tuple[bytes, bytes]:
    """RFC 9180 §4.1 Encap with the ephemeral key given: returns (shared_secret, enc)."""
    pk_rm = serialize_public_key(recipient)
    enc = serialize_public_key(ephemeral_private_key.public_key())
    dh = ephemeral_private_key.exchange(ec.ECDH(), recipient)
    return _extract_and_expand(dh, enc + pk_rm), enc


def decap(enc: bytes, recipient: RecipientKey) -> bytes:
    """RFC 9180 §4.1 Decap: the shared secret; the private key is used only through `exchange()`.

    Raises InvalidEncError when enc is not a valid point.
    """
    pk_e = deserialize_public_key(enc)
    pk_rm = serialize_public_key(recipient.public_key())
    dh = recipient.exchange(ec.ECDH(), pk_e)
    return _extract_and_expand(dh, enc + pk_rm)


@dataclass(frozen=True)
class Context:
    """The result of RFC 9180 §5.1 KeySchedule in base mode (intermediate values kept for the vectors)."""

    key_schedule_context: bytes
    secret: bytes
    key: bytes
    base_nonce: bytes
    exporter_secret: bytes

    def nonce(self, sequence_number: int) -> bytes:
        """RFC 9180 §5.2 ComputeNonce: base_nonce XOR I2OSP(seq, Nn)."""
        seq = sequence_number.to_bytes(N_N, "big")
        return bytes(a ^ b for a, b in zip(self.base_nonce, seq, strict=True))

    def seal(self, plaintext: bytes, aad: bytes, sequence_number: int = 0) -> bytes:
        """RFC 9180 §5.2 ContextS.Seal at `sequence_number` (single-shot uses 0)."""
        return AESGCM(self.key).encrypt(self.nonce(sequence_number), plaintext, aad)

    def open(self, ciphertext: bytes, aad: bytes, sequence_number: int = 0) -> bytes:
        """RFC 9180 §5.2 ContextR.Open; raises cryptography's InvalidTag on failure."""
        return AESGCM(self.key).decrypt(self.nonce(sequence_number), ciphertext, aad)


def key_schedule(shared_secret: bytes, info: bytes) -> Context:
    """RFC 9180 §5.1 KeySchedule for mode_base (psk = psk_id = empty)."""
    psk_id_hash = labeled_extract(b"", b"psk_id_hash", b"", HPKE_SUITE_ID)
    info_hash = labeled_extract(b"", b"info_hash", info, HPKE_SUITE_ID)
    ksc = bytes([MODE_BASE]) + psk_id_hash + info_hash
    secret = labeled_extract(shared_secret, b"secret", b"", HPKE_SUITE_ID)
    return Context(
        key_schedule_context=ksc,
        secret=secret,
        key=labeled_expand(secret, b"key", ksc, N_K, HPKE_SUITE_ID),
        base_nonce=labeled_expand(secret, b"base_nonce", ksc, N_N, HPKE_SUITE_ID),
        exporter_secret=labeled_expand(secret, b"exp", ksc, N_H, HPKE_SUITE_ID),
    )
