"""TPM 2.0 structures the verifier reads (Library Part 2): algorithm ids, object attributes, and a strict
big-endian reader (exact lengths, no trailing bytes). Every failure raises `AttestationError`.
"""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from protocol.errors import AttestationError

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

HASHES: dict[int, tuple[int, type[hashes.HashAlgorithm]]] = {
    ALG_SHA1: (20, hashes.SHA1),
    ALG_SHA256: (32, hashes.SHA256),
    ALG_SHA384: (48, hashes.SHA384),
    ALG_SHA512: (64, hashes.SHA512),
}
HASHLIB = {ALG_SHA1: "sha1", ALG_SHA256: "sha256", ALG_SHA384: "sha384", ALG_SHA512: "sha512"}
SCHEMES_WITH_HASH = {ALG_RSASSA, ALG_RSAPSS, ALG_OAEP, ALG_ECDSA, ALG_ECDH, ALG_ECSCHNORR, ALG_HMAC}
KDFS = {ALG_KDF1_SP800_56A, ALG_KDF2, ALG_KDF1_SP800_108}
CURVES: dict[int, tuple[ec.EllipticCurve, int]] = {
    ECC_NIST_P256: (ec.SECP256R1(), 32),
    ECC_NIST_P384: (ec.SECP384R1(), 48),
}
MAX_NAME = 2 + 64


# --- a strict big-endian reader ---------------------------------------------------------------------------


class Reader:
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


def unwrap_tpm2b(data: bytes, what: str) -> bytes:
    r = Reader(data, what)
    inner = r.tpm2b()
    r.end()
    return inner
