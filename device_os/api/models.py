"""Request and response bodies of the device API (public schemas: never a secret column, never the DEK).

Requests forbid unknown members and bound every string, so a body can be judged before the core sees it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from device_os.core.body import OutboxEntry
from device_os.core.device import Phase
from device_os.settings import RootPinning
from protocol.messages import Jwk

#: A PIN as sent; the core judges it (6..32 digits at setup; anything else is just a wrong PIN at unlock).
PinText = Annotated[str, Field(max_length=64)]
B64Url = Annotated[str, Field(min_length=1, max_length=2048, pattern=r"^[A-Za-z0-9_-]+$")]
CompactJws = Annotated[str, Field(min_length=5, max_length=12288, pattern=r"^[A-Za-z0-9_.-]+$")]
Nonce = Annotated[str, Field(min_length=16, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- requests ------------------------------------------------------------------------------------------------
class PinRequest(_Request):
    pin: PinText


class PinChangeRequest(_Request):
    old_pin: PinText
    new_pin: PinText


class ActivateRequest(_Request):
    """TPM2_ActivateCredential input from the center's MakeCredential (marshalled, base64url)."""

    credential_blob: B64Url  # TPM2B_ID_OBJECT
    encrypted_secret: B64Url  # TPM2B_ENCRYPTED_SECRET


class EnrollmentRequest(_Request):
    """A `coffer-enrollment` JWS and the center root's public key (checked against the pinned fingerprint)."""

    enrollment: CompactJws
    root_jwk: Jwk


class CreditRequest(_Request):
    credit: CompactJws


# -- responses -----------------------------------------------------------------------------------------------
class Health(_Response):
    status: Literal["ok"] = "ok"
    phase: Phase
    device_id: str | None
    tampered: bool
    tamper_reason: str | None
    software_version: str
    #: How the center root is pinned: `pinned` (configured), `trust-first` (the first enrollment's root, as
    #: explicitly allowed), `none` (enrollment refused until a root is configured).
    root_pinning: RootPinning


class CertifyEvidenceOut(_Response):
    attest: str
    signature: str
    certified_public: str
    ak_public: str


class CertifyPair(_Response):
    kem: CertifyEvidenceOut
    payment: CertifyEvidenceOut


class Identity(_Response):
    """What the center needs to enroll the device (flow 3); public, cached in clear in identity.json."""

    device_id: str
    software_version: str
    aead: Literal["aes-256-gcm", "chacha20-poly1305"]
    ek_certificate: str  # PEM
    ek_public: str  # base64url TPM2B_PUBLIC of the EK (MakeCredential's input)
    attestation_key: str  # PEM
    attestation_key_public: str  # base64url TPM2B_PUBLIC (its name is MakeCredential's object name)
    kem_key: str  # PEM
    payment_key: str  # PEM
    kem_jwk: Jwk
    payment_jwk: Jwk
    certify_nonce: str  # base64url
    certify: CertifyPair
    root_pinning: RootPinning  # as in Health
    pinned_root_fingerprint: str | None  # the configured center root (lowercase hex SHA-256 of its SPKI)


class SetupAnswer(_Response):
    device_id: str
    phase: Phase


class UnlockAnswer(_Response):
    token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the scheme name
    auto_lock_seconds: int


class ActivateAnswer(_Response):
    secret: str  # base64url of the credential secret TPM2_ActivateCredential recovered


class EnrollmentAnswer(_Response):
    device_id: str
    keyset_version: int
    root_fingerprint: str
    counter: int


class StatementAnswer(_Response):
    statement: str  # a `coffer-statement` JWS signed by the payment key in the TPM


class LibraryItem(_Response):
    """One owned item (public: no blob name, no wrapped key)."""

    item_id: str
    order_id: str
    mode: Literal["now", "deferred"]  # deferred: still the center's stream; re-encrypted at first open
    length: int
    sha256: str


class LibraryAnswer(_Response):
    items: list[LibraryItem]


class ReceiptAnswer(_Response):
    order_id: str
    counter: int


class OutboxAnswer(_Response):
    entries: list[OutboxEntry]  # payments without a receipt, oldest counter first
