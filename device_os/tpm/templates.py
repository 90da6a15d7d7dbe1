"""Handles, NV indexes, DA parameters, object attributes and templates of Coffer's TPM objects (DESIGN.md
"Keys"), and the checks on values sent to the TPM (PIN, ECC values). No TPM command here.
"""

from __future__ import annotations

from tpm2_pytss.constants import (
    TPM2_ALG,
    TPM2_NT,
    TPMA_NV,
    TPMA_OBJECT,
)
from tpm2_pytss.types import (
    TPM2B_PUBLIC,
)

from device_os.tpm.errors import (
    TpmError,
)

SRK_HANDLE = 0x81000001  # TCG Provisioning Guidance: the storage root key
EK_HANDLE = 0x81010001  # TCG: the RSA-2048 EK (swtpm_setup persists it there)
EK_CERT_INDEX = 0x01C00002  # TCG EK Credential Profile: RSA-2048 EK certificate
COUNTER_INDEX = 0x0100C0FE  # owner NV range: the wallet counter
DA_MAX_TRIES = 10
DA_RECOVERY_TIME = 600
DA_LOCKOUT_RECOVERY = 86400
TRANSIENT_SLOTS = 3  # swtpm's MAX_LOADED_OBJECTS; also the spec minimum (TPM_PT_HR_TRANSIENT_MIN)
MAX_PIN_BYTES = 32  # an authValue is at most the nameAlg digest size (SHA-256)
MAX_SEALED_BYTES = 128  # MAX_SYM_DATA
MAX_NONCE_BYTES = 32

_BASE_ATTRS = TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.USERWITHAUTH
_GENERATED = _BASE_ATTRS | TPMA_OBJECT.SENSITIVEDATAORIGIN
SRK_ATTRS = _GENERATED | TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.DECRYPT | TPMA_OBJECT.NODA
AK_ATTRS = _GENERATED | TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.SIGN_ENCRYPT | TPMA_OBJECT.NODA
KEM_ATTRS = _GENERATED | TPMA_OBJECT.DECRYPT
PAYMENT_ATTRS = _GENERATED | TPMA_OBJECT.SIGN_ENCRYPT
SEALED_ATTRS = _BASE_ATTRS
COUNTER_ATTRS = (
    TPMA_NV.OWNERWRITE
    | TPMA_NV.OWNERREAD
    | TPMA_NV.AUTHWRITE
    | TPMA_NV.AUTHREAD
    | TPMA_NV.NO_DA
    | (TPM2_NT.COUNTER << TPMA_NV.TPM2_NT_SHIFT)
)


def _template(alg: str, attrs: int) -> TPM2B_PUBLIC:
    public = TPM2B_PUBLIC.parse(alg, objectAttributes=attrs)
    if public.publicArea.type == TPM2_ALG.ECC and not attrs & TPMA_OBJECT.DECRYPT:
        # A signing key has no symmetric definition (create fails otherwise; FACTS.md).
        public.publicArea.parameters.eccDetail.symmetric.algorithm = TPM2_ALG.NULL
    return public


def srk_template() -> TPM2B_PUBLIC:
    return _template("ecc256:aes128cfb", SRK_ATTRS)


def ak_template() -> TPM2B_PUBLIC:
    return _template("ecc256:ecdsa-sha256", AK_ATTRS)


def kem_template() -> TPM2B_PUBLIC:
    return _template("ecc256:ecdh-sha256", KEM_ATTRS)


def payment_template() -> TPM2B_PUBLIC:
    return _template("ecc256:ecdsa-sha256", PAYMENT_ATTRS)


def sealed_template() -> TPM2B_PUBLIC:
    return TPM2B_PUBLIC.parse("keyedhash", objectAttributes=SEALED_ATTRS)


def check_pin(pin: bytes) -> bytes:
    if not isinstance(pin, bytes) or not 0 < len(pin) <= MAX_PIN_BYTES:
        raise ValueError(f"a PIN must be 1..{MAX_PIN_BYTES} bytes")
    if pin.endswith(b"\x00"):
        # The TPM strips trailing zero bytes from an authValue: b"12\0" would equal b"12".
        raise ValueError("a PIN must not end with a zero byte")
    return pin


def pad32(value: bytes) -> bytes:
    if len(value) > 32:
        raise TpmError("TPM returned an ECC value longer than 32 bytes")
    return value.rjust(32, b"\x00")
