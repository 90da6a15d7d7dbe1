"""Enrollment (DESIGN.md flow 3): attest the device's TPM, bind its keys, issue its token and welcome credit.

`challenge(identity)` checks, before anything is stored: the device_id is the attestation key's; the EK
certificate chains to the configured EK CA bundle (skipped only with `--allow-unattested`) and holds the EK
whose TPM2B_PUBLIC is presented; the KEM and payment keys are certified (TPM2_Certify) by that attestation
key and are what the device says; a device_id already bound to other keys is refused (binding-conflict). It
answers TPM2_MakeCredential(EK, name(attestation key), secret) and stores only the secret's digest.
`activate(device_id, answer)` checks the recovered secret (only the TPM holding that EK, with that attestation
key loaded, can recover it), then, in one transaction: binds (or re-confirms) the device, stores a fresh
token's digest, grants the welcome credit once per EK ever, and signs the `coffer-enrollment`.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from center import ledger
from center.db import tx
from center.db.commerce import CreditRow, Device, EnrollmentChallenge, WelcomeGrant
from center.errors import AttestationFailedError, BindingConflictError, ConfigError, ConflictError
from center.sealing import token_hash
from center.services.common import Commerce, canonical, lock_device, require_active
from protocol import attestation
from protocol.b64 import b64url_decode, b64url_encode
from protocol.center_api import (
    IDENTITY_CERTIFY_NONCE,
    ActivateRequest,
    DeviceIdentity,
    EnrollmentAnswer,
)
from protocol.center_api import (
    EnrollmentChallenge as ChallengeAnswer,
)
from protocol.errors import AttestationError, EncodingError
from protocol.keys import device_id_for, public_key_from_pem
from protocol.messages import Credit, Enrollment, Jwk
from protocol.money import Money

CREDIT_LIFETIME = 365 * 86400
MAX_OPEN = 4  # open enrollment challenges per device_id


@dataclass(frozen=True)
class EkTrust:
    roots: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...]


def load_ek_trust(paths: Sequence[Path]) -> EkTrust:
    """Certificates from PEM files: self-signed ones are roots, the others intermediates."""
    roots: list[x509.Certificate] = []
    intermediates: list[x509.Certificate] = []
    for path in paths:
        try:
            certificates = x509.load_pem_x509_certificates(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read EK CA certificates from {path}") from exc
        for cert in certificates:
            (roots if cert.issuer == cert.subject else intermediates).append(cert)
    return EkTrust(tuple(roots), tuple(intermediates))


@dataclass(frozen=True)
class Binding:
    """What a device_id is bound to: compared whole, never in parts."""

    ek_hash: str
    ak_public: str
    kem_jwk: str
    payment_jwk: str

    @classmethod
    def of(cls, identity: DeviceIdentity, ek_hash: str) -> Binding:
        return cls(
            ek_hash,
            identity.attestation_key_public,
            canonical(identity.kem_jwk.model_dump()),
            canonical(identity.payment_jwk.model_dump()),
        )

    @classmethod
    def stored(cls, device: Device) -> Binding:
        return cls(device.ek_hash, device.ak_public, device.kem_jwk, device.payment_jwk)


def _same_key(pem: str, jwk: Jwk, certified: ec.EllipticCurvePublicKey) -> bool:
    """The key the TPM certified is the one the device names, in PEM and as a JWK (EncodingError if not a
    P-256 key)."""
    wanted = certified.public_numbers()
    return public_key_from_pem(pem).public_numbers() == wanted == jwk.public_key().public_numbers()


class EnrollmentService:
    def __init__(self, commerce: Commerce, trust: EkTrust) -> None:
        self.c = commerce
        self.trust = trust

    # -- round trip 1 -------------------------------------------------------------------------------------
    def verify_identity(self, identity: DeviceIdentity) -> tuple[str, bytes]:
        """Every check of the identity; returns (EK hash, the attestation key's TPM name)."""
        try:
            ak_public = b64url_decode(identity.attestation_key_public)
            ak = attestation.parse_public(ak_public)
            ak_key = attestation.check_attestation_key(ak)
            if device_id_for(ak_key) != identity.device_id:
                raise AttestationError("device_id is not derived from the attestation key")
            if public_key_from_pem(identity.attestation_key).public_numbers() != ak_key.public_numbers():
                raise AttestationError("attestation_key does not match attestation_key_public")
            certificate = self._ek_certificate(identity.ek_certificate)
            ek_public = b64url_decode(identity.ek_public)
            attestation.check_ek_public(ek_public, certificate)
            nonce = b64url_decode(identity.certify_nonce)
            if not hmac.compare_digest(nonce, IDENTITY_CERTIFY_NONCE):
                raise AttestationError("certify evidence answers an unknown nonce")
            for evidence, check, pem, jwk in (
                (identity.certify.kem, attestation.check_kem_key, identity.kem_key, identity.kem_jwk),
                (
                    identity.certify.payment,
                    attestation.check_payment_key,
                    identity.payment_key,
                    identity.payment_jwk,
                ),
            ):
                certified = attestation.verify_certify(
                    attestation.CertifyEvidence.from_json(evidence.model_dump()),
                    nonce=nonce,
                    ak_public=ak_public,
                )
                if not _same_key(pem, jwk, check(certified)):
                    raise AttestationError("a certified key is not the key the device names")
        except (AttestationError, EncodingError) as exc:
            raise AttestationFailedError(f"the TPM evidence was rejected: {exc}") from exc
        spki = certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return hashlib.sha256(spki).hexdigest(), ak.name

    def _ek_certificate(self, pem: str) -> x509.Certificate:
        try:
            certificate = x509.load_pem_x509_certificate(pem.encode("ascii"))
        except (ValueError, UnicodeEncodeError) as exc:
            raise AttestationError("the EK certificate is not PEM X.509") from exc
        if not self.c.settings.allow_unattested:
            now = datetime.datetime.fromtimestamp(self.c.now(), datetime.UTC)
            der = certificate.public_bytes(serialization.Encoding.DER)
            attestation.verify_ek_certificate(der, self.trust.roots, self.trust.intermediates, now=now)
        return certificate

    def challenge(self, identity: DeviceIdentity) -> ChallengeAnswer:
        ek_hash, ak_name = self.verify_identity(identity)
        secret = secrets.token_bytes(32)
        try:
            blob, encrypted = attestation.make_credential(b64url_decode(identity.ek_public), ak_name, secret)
        except AttestationError as exc:
            raise AttestationFailedError(f"cannot make a credential for this EK: {exc}") from exc
        now = self.c.now()
        row = EnrollmentChallenge(
            challenge_id=secrets.token_urlsafe(24),
            device_id=identity.device_id,
            identity=identity.model_dump_json(),
            secret_hash=hashlib.sha256(secret).hexdigest(),
            expires_at=now + self.c.settings.challenge_ttl,
        )
        with tx.write(self.c.sessions) as session:
            device = session.get(Device, identity.device_id)
            reset = device is not None and device.ek_hash == ""  # `center device reset`: binds anew
            if device is not None and not reset and Binding.stored(device) != Binding.of(identity, ek_hash):
                raise BindingConflictError(f"{identity.device_id} is bound to other keys")
            self._prune(session, identity.device_id, now)
            session.add(row)
        return ChallengeAnswer(
            device_id=identity.device_id,
            challenge_id=row.challenge_id,
            credential_blob=b64url_encode(blob),
            encrypted_secret=b64url_encode(encrypted),
            expires_at=row.expires_at,
        )

    @staticmethod
    def _prune(session: Session, device_id: str, now: int) -> None:
        """Keep the table bounded: a replayed identity (it is public) can hold at most MAX_OPEN challenges of
        its device open; used, expired and the oldest open ones go."""
        c = EnrollmentChallenge
        session.execute(
            delete(c).where(c.device_id == device_id, (c.used_at.is_not(None)) | (c.expires_at <= now))
        )
        open_ids = session.scalars(
            select(c.challenge_id).where(c.device_id == device_id).order_by(c.expires_at.desc())
        ).all()
        if len(open_ids) >= MAX_OPEN:
            session.execute(delete(c).where(c.challenge_id.in_(open_ids[MAX_OPEN - 1 :])))

    # -- round trip 2 -------------------------------------------------------------------------------------
    def activate(self, device_id: str, answer: ActivateRequest) -> EnrollmentAnswer:
        try:
            secret = b64url_decode(answer.secret)
        except EncodingError as exc:
            raise AttestationFailedError("the activation secret is not base64url") from exc
        token = secrets.token_urlsafe(32)
        try:
            with tx.write(self.c.sessions) as session:
                now = self.c.now()
                query = select(EnrollmentChallenge).where(
                    EnrollmentChallenge.challenge_id == answer.challenge_id
                )
                challenge = session.scalars(query.with_for_update()).one_or_none()
                if (
                    challenge is None
                    or challenge.device_id != device_id
                    or challenge.used_at is not None
                    or challenge.expires_at <= now
                    or not hmac.compare_digest(challenge.secret_hash, hashlib.sha256(secret).hexdigest())
                ):
                    raise AttestationFailedError(
                        "the credential activation does not answer an open challenge"
                    )
                challenge.used_at = now
                identity = DeviceIdentity.model_validate_json(challenge.identity)
                ek_hash = self._ek_hash(identity)
                self._bind(session, identity, ek_hash, token, now)
                welcome = self._welcome(session, device_id, ek_hash, now)
                enrollment = self.c.sign(
                    Enrollment(
                        iss=self.c.issuer,
                        iat=now,
                        device_id=device_id,
                        keyset=self.c.keys.keyset_jws,
                        device_token_hash=token_hash(token),
                    )
                )
        except IntegrityError as exc:  # a concurrent first enrollment of the same device or EK
            raise ConflictError("another enrollment of this device is in progress; try again") from exc
        return EnrollmentAnswer(
            device_id=device_id,
            enrollment=enrollment,
            root_jwk=self.c.keys.root_jwk,
            keyset_version=self.c.keys.keyset_version,
            device_token=token,
            welcome_credit=welcome,
        )

    @staticmethod
    def _ek_hash(identity: DeviceIdentity) -> str:
        certificate = x509.load_pem_x509_certificate(identity.ek_certificate.encode("ascii"))
        spki = certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return hashlib.sha256(spki).hexdigest()

    @staticmethod
    def _bind(session: Session, identity: DeviceIdentity, ek_hash: str, token: str, now: int) -> None:
        binding = Binding.of(identity, ek_hash)
        device = lock_device(session, identity.device_id)
        if device is None:
            session.add(
                Device(
                    device_id=identity.device_id,
                    ek_hash=binding.ek_hash,
                    ak_public=binding.ak_public,
                    kem_jwk=binding.kem_jwk,
                    payment_jwk=binding.payment_jwk,
                    aead=identity.aead,
                    token_hash=token_hash(token),
                    state="active",
                    enrolled_at=now,
                    updated_at=now,
                )
            )
        elif device.ek_hash == "":  # reset by the operator: bind the keys presented now
            device.ek_hash, device.ak_public = binding.ek_hash, binding.ak_public
            device.kem_jwk, device.payment_jwk = binding.kem_jwk, binding.payment_jwk
            device.aead, device.token_hash, device.updated_at = identity.aead, token_hash(token), now
        elif Binding.stored(device) != binding:
            raise BindingConflictError(f"{identity.device_id} is bound to other keys")
        else:
            require_active(device)
            device.aead, device.token_hash, device.updated_at = identity.aead, token_hash(token), now
        session.flush()

    def _welcome(self, session: Session, device_id: str, ek_hash: str, now: int) -> str | None:
        """The welcome credit: granted once per EK ever; this device's own grant is answered again."""
        settings = self.c.settings
        grant = session.get(WelcomeGrant, ek_hash)
        if grant is not None:
            if grant.device_id != device_id:
                return None
            credit = session.get(CreditRow, grant.credit_id)
            return credit.credit_jws if credit is not None else None
        if settings.welcome_credit == 0:
            return None
        credit_id = "wc_" + base64.b32encode(secrets.token_bytes(10)).decode("ascii").lower()
        currency = settings.welcome_currency
        token = self.c.sign(
            Credit(
                iss=self.c.issuer,
                iat=now,
                credit_id=credit_id,
                device_id=device_id,
                kind="prepaid",
                amount=Money(amount=settings.welcome_credit, currency=currency),
                exp=now + CREDIT_LIFETIME,
            )
        )
        session.add(WelcomeGrant(ek_hash=ek_hash, device_id=device_id, credit_id=credit_id, granted_at=now))
        session.add(
            CreditRow(
                credit_id=credit_id,
                device_id=device_id,
                kind="prepaid",
                source="welcome",
                amount=settings.welcome_credit,
                currency=currency,
                iat=now,
                exp=now + CREDIT_LIFETIME,
                redeemed_at=now,
                credit_jws=token,
            )
        )
        book = ledger.Ledger(session, now)
        book.open_house_accounts(currency)
        account = book.open_account(ledger.wallet(device_id, currency), "wallet", currency, device_id)
        leg = ledger.Leg(
            f"fund:{credit_id}", ledger.promotions(currency), account, settings.welcome_credit, currency
        )
        book.post(f"fund:{credit_id}", "fund", [leg])
        session.flush()
        return token
