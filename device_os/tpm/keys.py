"""The PIN-bound keys: the hot KEM and payment keys (loaded at unlock; ECDH_ZGen and Sign, one TPM command
each), the sealed DEK (Unseal) and a PIN change (ObjectChangeAuth).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric import ec
from tpm2_pytss import TSS2_Exception
from tpm2_pytss.constants import (
    ESYS_TR,
    TPM2_ALG,
    TPM2_RH,
    TPM2_ST,
    TPMA_SESSION,
)
from tpm2_pytss.types import (
    TPM2B_AUTH,
    TPM2B_DIGEST,
    TPM2B_ECC_PARAMETER,
    TPM2B_ECC_POINT,
    TPMS_ECC_POINT,
    TPMT_SIG_SCHEME,
    TPMT_TK_HASHCHECK,
)

from device_os.tpm.context import HotKey, TpmContext
from device_os.tpm.errors import (
    BadBlob,
    KeyNotLoaded,
    translate,
)
from device_os.tpm.templates import kem_template, pad32, payment_template
from device_os.tpm.types import KeyBlob
from protocol.attestation import parse_public
from protocol.errors import AttestationError

T = TypeVar("T")
log = logging.getLogger(__name__)


def blob_public_key(blob: KeyBlob) -> ec.EllipticCurvePublicKey:
    """The P-256 public key of a key blob (parsed in software; no TPM command)."""
    try:
        return parse_public(blob.public).ec_public_key()
    except AttestationError as exc:
        raise BadBlob(f"not an ECC key blob: {exc}") from exc


class KemKey:
    """The device's HPKE recipient key: ECDH runs in the TPM (TPM2_ECDH_ZGen); the private key never leaves.

    Satisfies `protocol.hpke.RecipientKey`: `public_key()` and `exchange(ec.ECDH(), peer)`.
    """

    def __init__(self, tpm: KeyOps, hot: HotKey) -> None:
        self._tpm = tpm
        self._hot = hot

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._hot.public_key

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        """TPM2_ECDH_ZGen (Part 3 §14.5): the x-coordinate of d·Q, 32 bytes, as cryptography's exchange()."""
        if not isinstance(algorithm, ec.ECDH):
            raise TypeError("only ECDH is supported")
        if not isinstance(peer_public_key, ec.EllipticCurvePublicKey) or not isinstance(
            peer_public_key.curve, ec.SECP256R1
        ):
            raise ValueError("peer key must be a P-256 public key")
        numbers = peer_public_key.public_numbers()
        x, y = numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big")
        return self._tpm._run(lambda: self._tpm._ecdh_zgen(self._hot, x, y))


class PaymentKey:
    """The PIN-bound payment key: a `protocol.jws.Signer` whose ECDSA runs in the TPM (TPM2_Sign)."""

    def __init__(self, tpm: KeyOps, hot: HotKey) -> None:
        self._tpm = tpm
        self._hot = hot

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._hot.public_key

    def sign(self, data: bytes) -> bytes:
        """ECDSA P-256 / SHA-256 over `data` (hashed here, signed in the TPM); returns raw r||s (64 bytes)."""
        digest = hashlib.sha256(data).digest()
        return self._tpm._run(lambda: self._tpm._sign(self._hot, digest))


class KeyOps(TpmContext):
    """Worker-side: sealing, PIN changes and the hot keys."""

    def _unseal(self, blob: KeyBlob, pin: bytes) -> bytes:
        with self._slots(2):
            try:
                handle = self._load(blob, pin)
            except TSS2_Exception as exc:
                raise translate(exc, what="loading the sealed object") from exc
            try:
                return bytes(self._esys.unseal(handle, session1=self._secure(TPMA_SESSION.ENCRYPT)))
            except TSS2_Exception as exc:
                raise self._pin_error(exc, "TPM2_Unseal") from exc
            finally:
                self._flush(handle)

    def _change_auth(self, blob: KeyBlob, old_pin: bytes, new_pin: bytes) -> KeyBlob:
        with self._slots(2):
            try:
                handle = self._load(blob, old_pin)
            except TSS2_Exception as exc:
                raise translate(exc, what="loading the object") from exc
            try:
                private = self._esys.object_change_auth(
                    handle, self._srk, TPM2B_AUTH(new_pin), session1=self._secure(TPMA_SESSION.DECRYPT)
                )
            except TSS2_Exception as exc:
                raise self._pin_error(exc, "TPM2_ObjectChangeAuth") from exc
            finally:
                self._flush(handle)
        return KeyBlob(public=blob.public, private=private.marshal())

    def _ensure_loaded(self, hot: HotKey) -> Any:
        if hot not in self._hot:
            raise KeyNotLoaded(f"the {hot.role} key was unloaded")
        if hot.handle is None:
            try:
                self._load_hot(hot)
            except TSS2_Exception as exc:
                raise translate(exc, what=f"reloading the {hot.role} key") from exc
        return hot.handle

    def _load_hot_keys(self, kem: KeyBlob, payment: KeyBlob, pin: bytes) -> tuple[KemKey, PaymentKey]:
        self._unload_hot_keys()
        kem_hot = HotKey("KEM", kem, pin, blob_public_key(kem))
        payment_hot = HotKey("payment", payment, pin, blob_public_key(payment))
        self._check_blob_template(kem, kem_template())
        self._check_blob_template(payment, payment_template())
        try:
            self._load_hot(kem_hot)
            self._hot.append(kem_hot)
            self._load_hot(payment_hot)
            self._hot.append(payment_hot)
        except TSS2_Exception as exc:
            self._unload_hot_keys()
            raise translate(exc, what="loading the hot keys") from exc
        return KemKey(self, kem_hot), PaymentKey(self, payment_hot)

    def _ecdh_zgen(self, hot: HotKey, x: bytes, y: bytes) -> bytes:
        handle = self._ensure_loaded(hot)
        point = TPM2B_ECC_POINT(TPMS_ECC_POINT(x=TPM2B_ECC_PARAMETER(x), y=TPM2B_ECC_PARAMETER(y)))
        try:
            # The PIN authorizes by HMAC in the salted session; ENCRYPT keeps Z (the response) off the bus.
            z = self._esys.ecdh_zgen(
                handle,
                point,
                session1=self._secure(TPMA_SESSION.ENCRYPT) if hot.auth is not None else ESYS_TR.PASSWORD,
            )
        except TSS2_Exception as exc:
            raise self._pin_error(exc, "TPM2_ECDH_ZGen") from exc
        return pad32(bytes(z.point.x))

    def _sign(self, hot: HotKey, digest: bytes) -> bytes:
        handle = self._ensure_loaded(hot)
        # An unrestricted key signs an external digest with the NULL ticket (Part 3 §20.2).
        ticket = TPMT_TK_HASHCHECK(tag=TPM2_ST.HASHCHECK, hierarchy=TPM2_RH.NULL)
        try:
            signature = self._esys.sign(
                handle,
                TPM2B_DIGEST(digest),
                TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL),
                ticket,
                session1=self._secure() if hot.auth is not None else ESYS_TR.PASSWORD,
            )
        except TSS2_Exception as exc:
            raise self._pin_error(exc, "TPM2_Sign") from exc
        return pad32(bytes(signature.signature.ecdsa.signatureR)) + pad32(
            bytes(signature.signature.ecdsa.signatureS)
        )
