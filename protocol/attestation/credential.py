"""The MakeCredential half of credential activation, in software (Part 1 §24; Part 3 §12.6), and KDFa
(Part 1 §11.4.10.2). See the package docstring for the construction.
"""

from __future__ import annotations

import hmac
import os
import struct

from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFHMAC, CounterLocation, Mode

from protocol.attestation.public import TpmPublic, parse_public
from protocol.attestation.structures import (
    ALG_AES,
    ALG_CFB,
    ALG_RSA,
    ATTR_DECRYPT,
    ATTR_RESTRICTED,
    HASHES,
    HASHLIB,
)
from protocol.errors import AttestationError

# --- MakeCredential (Part 1 §24) --------------------------------------------------------------------------


def kdfa(hash_alg: int, key: bytes, label: bytes, context_u: bytes, context_v: bytes, bits: int) -> bytes:
    """KDFa (Part 1 §11.4.10.2): SP 800-108 counter-mode HMAC, i.e. cryptography's KBKDFHMAC with a 32-bit
    counter before the fixed input `label || 0x00 || contextU || contextV || [bits]_32` (byte for byte the
    same as the hand-written loop it replaced; tests/tpm/test_attestation.py keeps that loop as an oracle)."""
    if hash_alg not in HASHES or bits % 8:
        raise AttestationError("unsupported KDFa parameters")
    kdf = KBKDFHMAC(
        algorithm=HASHES[hash_alg][1](),
        mode=Mode.CounterMode,
        length=bits // 8,
        rlen=4,
        llen=4,
        location=CounterLocation.BeforeFixed,
        label=label,
        context=context_u + context_v,
        fixed=None,
    )
    return kdf.derive(key)


def _make_credential_from_parts(
    ek: TpmPublic, object_name: bytes, secret: bytes, seed: bytes, encrypted_seed: bytes
) -> tuple[bytes, bytes]:
    digest_size = HASHES[ek.name_alg][0]
    if not 0 < len(secret) <= digest_size:
        raise AttestationError(f"credential secret must be 1..{digest_size} bytes")
    algorithm, bits, mode = ek.symmetric
    if algorithm != ALG_AES or mode != ALG_CFB:
        raise AttestationError("EK has no AES-CFB symmetric definition")
    sym_key = kdfa(ek.name_alg, seed, b"STORAGE", object_name, b"", bits)
    encryptor = Cipher(algorithms.AES(sym_key), CFB(b"\x00" * 16)).encryptor()
    enc_identity = encryptor.update(struct.pack(">H", len(secret)) + secret) + encryptor.finalize()
    hmac_key = kdfa(ek.name_alg, seed, b"INTEGRITY", b"", b"", digest_size * 8)
    outer_hmac = hmac.new(hmac_key, enc_identity + object_name, HASHLIB[ek.name_alg]).digest()
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
    if name_alg not in HASHES or len(object_name) != 2 + HASHES[name_alg][0]:
        raise AttestationError("object name is not nameAlg || digest")
    size, hash_cls = HASHES[ek.name_alg]
    seed = os.urandom(size)
    key = ek.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    encrypted_seed = key.encrypt(
        seed, padding.OAEP(mgf=padding.MGF1(hash_cls()), algorithm=hash_cls(), label=b"IDENTITY\x00")
    )
    return _make_credential_from_parts(ek, object_name, secret, seed, encrypted_seed)
