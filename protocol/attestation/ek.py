"""The EK certificate and the EK public area (TCG EK Credential Profile): `verify_ek_certificate`,
`check_ek_public`. See the package docstring for the policy.
"""

from __future__ import annotations

import datetime
import hmac
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ObjectIdentifier
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError

from protocol.attestation.public import TpmPublic, parse_public
from protocol.attestation.structures import (
    ALG_AES,
    ALG_CFB,
    ALG_RSA,
    ALG_SHA256,
    ATTR_ADMIN_WITH_POLICY,
    ATTR_DECRYPT,
    ATTR_FIXED_PARENT,
    ATTR_FIXED_TPM,
    ATTR_RESTRICTED,
    ATTR_SENSITIVE_DATA_ORIGIN,
    ATTR_SIGN,
    ATTR_USER_WITH_AUTH,
)
from protocol.errors import AttestationError

TCG_KP_EK_CERTIFICATE = ObjectIdentifier("2.23.133.8.1")
# TPM2_PolicySecret(TPM_RH_ENDORSEMENT) digest: the authPolicy of the TCG default (low-range) EK templates
# (TCG EK Credential Profile 2.x, B.3.3).
EK_POLICY_SHA256 = bytes.fromhex("837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa")
_EK_ATTRS = (
    ATTR_FIXED_TPM | ATTR_FIXED_PARENT | ATTR_SENSITIVE_DATA_ORIGIN | ATTR_ADMIN_WITH_POLICY | ATTR_RESTRICTED
) | ATTR_DECRYPT


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
