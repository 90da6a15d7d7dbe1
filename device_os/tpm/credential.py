"""Attestation on the device: TPM2_Certify by the attestation key, TPM2_ActivateCredential with the EK,
and the EK's certificate and public area.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from typing import TypeVar

from tpm2_pytss import TSS2_Exception
from tpm2_pytss.constants import (
    ESYS_TR,
    TPM2_ALG,
    TPM2_SE,
)
from tpm2_pytss.types import (
    TPM2B_DATA,
    TPM2B_DIGEST,
    TPM2B_ENCRYPTED_SECRET,
    TPM2B_ID_OBJECT,
    TPM2B_NONCE,
    TPMT_SIG_SCHEME,
    TPMT_SYM_DEF,
)
from tpm2_pytss.utils import NVReadEK

from device_os.tpm.context import TpmContext
from device_os.tpm.errors import (
    TpmError,
    TpmNotProvisioned,
    translate,
)
from device_os.tpm.templates import EK_CERT_INDEX, TRANSIENT_SLOTS, pad32
from device_os.tpm.types import KeyBlob
from protocol.attestation import CertifyEvidence

T = TypeVar("T")
log = logging.getLogger(__name__)


class CredentialOps(TpmContext):
    """Worker-side: Certify, ActivateCredential, the EK."""

    def _certify(self, ak: KeyBlob, key: KeyBlob, nonce: bytes, auth: bytes | None) -> CertifyEvidence:
        with self._slots(TRANSIENT_SLOTS):
            try:
                ak_handle = self._load(ak)
            except TSS2_Exception as exc:
                raise translate(exc, what="loading the attestation key") from exc
            try:
                key_handle = self._load(key, auth)
            except TSS2_Exception as exc:
                self._flush(ak_handle)
                raise translate(exc, what="loading the key to certify") from exc
            try:
                attest, signature = self._esys.certify(
                    key_handle,
                    ak_handle,
                    TPM2B_DATA(nonce),
                    TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL),
                    session1=self._secure() if auth is not None else ESYS_TR.PASSWORD,
                    session2=ESYS_TR.PASSWORD,
                )
            except TSS2_Exception as exc:
                raise self._pin_error(exc, "TPM2_Certify") from exc
            finally:
                self._flush(key_handle)
                self._flush(ak_handle)
        return CertifyEvidence(
            attest=bytes(attest),
            signature=pad32(bytes(signature.signature.ecdsa.signatureR))
            + pad32(bytes(signature.signature.ecdsa.signatureS)),
            certified_public=key.public,
            ak_public=ak.public,
        )

    def _activate(self, ak: KeyBlob, credential_blob: bytes, encrypted_secret: bytes) -> bytes:
        if self._ek is None:
            raise TpmNotProvisioned("no EK at 0x81010001: provision first")
        try:
            id_object, used = TPM2B_ID_OBJECT.unmarshal(credential_blob)
            secret, used_secret = TPM2B_ENCRYPTED_SECRET.unmarshal(encrypted_secret)
        except Exception as exc:
            raise TpmError("credential blob or encrypted secret does not unmarshal") from exc
        if used != len(credential_blob) or used_secret != len(encrypted_secret):
            raise TpmError("trailing bytes after the credential blob or encrypted secret")
        with self._slots(2):
            try:
                ak_handle = self._load(ak)
            except TSS2_Exception as exc:
                raise translate(exc, what="loading the attestation key") from exc
            session = None
            try:
                session = self._esys.start_auth_session(
                    tpm_key=ESYS_TR.NONE,
                    bind=ESYS_TR.NONE,
                    session_type=TPM2_SE.POLICY,
                    symmetric=TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL),
                    auth_hash=TPM2_ALG.SHA256,
                    nonce_caller=TPM2B_NONCE(secrets.token_bytes(32)),
                )
                self._esys.policy_secret(
                    ESYS_TR.ENDORSEMENT, session, TPM2B_NONCE(b""), TPM2B_DIGEST(b""), TPM2B_NONCE(b""), 0
                )
                cert_info = self._esys.activate_credential(
                    ak_handle, self._ek, id_object, secret, session1=ESYS_TR.PASSWORD, session2=session
                )
                session = None  # the TPM flushed it (continueSession is clear after use)
                return bytes(cert_info)
            except TSS2_Exception as exc:
                raise translate(exc, what="TPM2_ActivateCredential") from exc
            finally:
                if session is not None:
                    with contextlib.suppress(TSS2_Exception):
                        self._esys.flush_context(session)
                self._flush(ak_handle)

    def _ek_certificate(self) -> bytes:
        try:
            raw = NVReadEK(self._esys)(EK_CERT_INDEX)
        except TSS2_Exception as exc:
            raise translate(exc, what="reading the EK certificate") from exc
        except Exception as exc:  # tpm2_pytss.utils.NoSuchIndex
            raise TpmNotProvisioned("no EK certificate in NV 0x01c00002") from exc
        return _der_prefix(raw)

    def _ek_public(self) -> bytes:
        if self._ek is None:
            raise TpmNotProvisioned("no EK at 0x81010001: provision first")
        try:
            return bytes(self._read_public(self._ek).marshal())
        except TSS2_Exception as exc:
            raise translate(exc, what="reading the EK") from exc


def _der_prefix(raw: bytes) -> bytes:
    """NV areas may be larger than the certificate: keep exactly the outer DER SEQUENCE."""
    if len(raw) < 2 or raw[0] != 0x30:
        raise TpmError("EK certificate NV area does not hold DER")
    length = raw[1]
    if length < 0x80:
        end = 2 + length
    else:
        n = length & 0x7F
        if n == 0 or n > 4 or len(raw) < 2 + n:
            raise TpmError("EK certificate has a bad DER length")
        end = 2 + n + int.from_bytes(raw[2 : 2 + n], "big")
    if end > len(raw):
        raise TpmError("EK certificate is truncated")
    return raw[:end]
