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

Modules: `structures` (algorithm ids, attributes, the strict reader), `public` (TPMT_PUBLIC), `certify`
(TPMS_ATTEST, Certify evidence, key checks), `credential` (KDFa, MakeCredential), `ek` (EK certificate and
public area). Import from this package; its names are the public surface.
"""

from __future__ import annotations

from protocol.attestation.certify import (
    Attest,
    CertifyEvidence,
    check_attestation_key,
    check_kem_key,
    check_payment_key,
    parse_attest,
    verify_certify,
)
from protocol.attestation.credential import (
    kdfa,
    make_credential,
)
from protocol.attestation.ek import (
    EK_POLICY_SHA256,
    TCG_KP_EK_CERTIFICATE,
    check_ek_public,
    ek_public_key_from_certificate,
    verify_ek_certificate,
)
from protocol.attestation.public import (
    TpmPublic,
    parse_public,
)
from protocol.attestation.structures import (
    ALG_AES,
    ALG_CFB,
    ALG_ECC,
    ALG_ECDAA,
    ALG_ECDH,
    ALG_ECDSA,
    ALG_ECSCHNORR,
    ALG_HMAC,
    ALG_KDF1_SP800_56A,
    ALG_KDF1_SP800_108,
    ALG_KDF2,
    ALG_KEYEDHASH,
    ALG_NULL,
    ALG_OAEP,
    ALG_RSA,
    ALG_RSAES,
    ALG_RSAPSS,
    ALG_RSASSA,
    ALG_SHA1,
    ALG_SHA256,
    ALG_SHA384,
    ALG_SHA512,
    ALG_SYMCIPHER,
    ALG_XOR,
    ATTR_ADMIN_WITH_POLICY,
    ATTR_DECRYPT,
    ATTR_ENCRYPTED_DUPLICATION,
    ATTR_FIXED_PARENT,
    ATTR_FIXED_TPM,
    ATTR_NO_DA,
    ATTR_RESTRICTED,
    ATTR_SENSITIVE_DATA_ORIGIN,
    ATTR_SIGN,
    ATTR_ST_CLEAR,
    ATTR_USER_WITH_AUTH,
    ECC_NIST_P256,
    ECC_NIST_P384,
    ST_ATTEST_CERTIFY,
    TPM_GENERATED_VALUE,
)

__all__ = [
    "ALG_AES",
    "ALG_CFB",
    "ALG_ECC",
    "ALG_ECDAA",
    "ALG_ECDH",
    "ALG_ECDSA",
    "ALG_ECSCHNORR",
    "ALG_HMAC",
    "ALG_KDF1_SP800_56A",
    "ALG_KDF1_SP800_108",
    "ALG_KDF2",
    "ALG_KEYEDHASH",
    "ALG_NULL",
    "ALG_OAEP",
    "ALG_RSA",
    "ALG_RSAES",
    "ALG_RSAPSS",
    "ALG_RSASSA",
    "ALG_SHA1",
    "ALG_SHA256",
    "ALG_SHA384",
    "ALG_SHA512",
    "ALG_SYMCIPHER",
    "ALG_XOR",
    "ATTR_ADMIN_WITH_POLICY",
    "ATTR_DECRYPT",
    "ATTR_ENCRYPTED_DUPLICATION",
    "ATTR_FIXED_PARENT",
    "ATTR_FIXED_TPM",
    "ATTR_NO_DA",
    "ATTR_RESTRICTED",
    "ATTR_SENSITIVE_DATA_ORIGIN",
    "ATTR_SIGN",
    "ATTR_ST_CLEAR",
    "ATTR_USER_WITH_AUTH",
    "ECC_NIST_P256",
    "ECC_NIST_P384",
    "EK_POLICY_SHA256",
    "ST_ATTEST_CERTIFY",
    "TCG_KP_EK_CERTIFICATE",
    "TPM_GENERATED_VALUE",
    "Attest",
    "CertifyEvidence",
    "TpmPublic",
    "check_attestation_key",
    "check_ek_public",
    "check_kem_key",
    "check_payment_key",
    "ek_public_key_from_certificate",
    "kdfa",
    "make_credential",
    "parse_attest",
    "parse_public",
    "verify_certify",
    "verify_ek_certificate",
]
