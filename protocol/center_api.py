"""The center's public commerce API models (DESIGN.md flows 3, 5, 6, 7; "Center API"), shared by the center
and `terminal_cli` so both sides validate the same shapes. No secret is ever part of an answer except the
device's own bearer token, once, in `EnrollmentAnswer`.

Flow 3 (enrollment, two round trips, relayed by the terminal):
  1. `GET device /v1/identity` -> `DeviceIdentity`, posted as is to `POST center /v1/devices`
     -> 201 `EnrollmentChallenge` (MakeCredential for the attestation key's name).
  2. `{credential_blob, encrypted_secret}` of the challenge -> `POST device /v1/activate` -> `{secret}`;
     `ActivateRequest{challenge_id, secret}` -> `POST center /v1/devices/{device_id}/activate`
     -> `EnrollmentAnswer` (`{enrollment, root_jwk}` goes to `POST device /v1/enrollment`;
     `welcome_credit`, when present, to `POST device /v1/credits`; the terminal keeps `device_token`).
Flow 6: `RedeemRequest` -> `POST /v1/credits/redeem` -> `CreditAnswer`.
Flow 5: `OrderRequest` + `Idempotency-Key` -> `POST /v1/orders` -> 201 `OrderAnswer`;
  `GET /v1/orders/{order_id}` -> `OrderStatus`; `GET /v1/orders/{order_id}/content` -> the content stream;
  `PaymentRequest` -> `POST /v1/orders/{order_id}/payment` -> `PaymentAnswer` (the receipt).
Flow 7: `StatementRequest` -> `POST /v1/statements` -> `StatementAnswer`.
Every route after enrollment takes `Authorization: Bearer <device_token>`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from protocol.messages import Aead, CreditKind, DeviceId, Jwk, OrderId, Sha256B64
from protocol.money import Money
from protocol.pricing import CreditId, Debit, ItemId, NumericDate

#: TPM2_Certify qualifyingData the device uses for its identity evidence (device_os setup); freshness of the
#: enrollment comes from the center's credential activation, not from this constant.
IDENTITY_CERTIFY_NONCE = b"coffer/identity/v1"
#: Header naming the client's idempotency key on `POST /v1/orders`.
IDEMPOTENCY_HEADER = "Idempotency-Key"
IdempotencyKey = Annotated[str, Field(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]

B64Url = Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^[A-Za-z0-9_-]+$")]
Pem = Annotated[str, Field(min_length=1, max_length=8192)]
CompactJws = Annotated[
    str, Field(min_length=5, max_length=16384, pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+){2}$")
]
ChallengeId = Annotated[str, Field(min_length=16, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
CreditCode = Annotated[str, Field(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]
OrderState = Literal["held", "paid", "unpaid-delivery", "expired"]
DeviceState = Literal["active", "revoked", "suspect"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- enrollment (flow 3) ---------------------------------------------------------------------------
class CertifyEvidenceJson(_Model):
    """One TPM2_Certify result (`protocol.attestation.CertifyEvidence.to_json`), base64url members."""

    attest: B64Url
    signature: B64Url
    certified_public: B64Url
    ak_public: B64Url


class CertifyPair(_Model):
    kem: CertifyEvidenceJson
    payment: CertifyEvidenceJson


class DeviceIdentity(BaseModel):
    """`POST /v1/devices`: the device's `GET /v1/identity` answer, relayed unchanged (docs/device-api.md).

    Members the center does not judge (the device also publishes e.g. its root pinning) are ignored, so the
    device may add to its identity without breaking enrollment; everything declared here is verified.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    device_id: DeviceId
    software_version: Annotated[str, Field(max_length=64)]
    aead: Aead
    ek_certificate: Pem
    ek_public: B64Url
    attestation_key: Pem
    attestation_key_public: B64Url
    kem_key: Pem
    payment_key: Pem
    kem_jwk: Jwk
    payment_jwk: Jwk
    certify_nonce: B64Url
    certify: CertifyPair


class EnrollmentChallenge(_Model):
    """201 answer to `POST /v1/devices`: TPM2_MakeCredential to the EK for the attestation key's name.

    Relay `credential_blob` and `encrypted_secret` to `POST device /v1/activate`; answer the recovered secret
    with `challenge_id` before `expires_at`.
    """

    device_id: DeviceId
    challenge_id: ChallengeId
    credential_blob: B64Url  # marshalled TPM2B_ID_OBJECT
    encrypted_secret: B64Url  # marshalled TPM2B_ENCRYPTED_SECRET
    expires_at: NumericDate


class ActivateRequest(_Model):
    """`POST /v1/devices/{device_id}/activate`: the secret the device's TPM2_ActivateCredential recovered."""

    challenge_id: ChallengeId
    secret: B64Url


class EnrollmentAnswer(_Model):
    """The enrollment: post `{enrollment, root_jwk}` to the device; keep `device_token` (shown once)."""

    device_id: DeviceId
    enrollment: CompactJws  # coffer-enrollment
    root_jwk: Jwk
    keyset_version: Annotated[StrictInt, Field(ge=1)]
    device_token: Annotated[str, Field(min_length=32, max_length=128)]
    welcome_credit: CompactJws | None = None  # coffer-credit, once per EK ever (and again on re-enrollment)


# -- credits (flow 6) ------------------------------------------------------------------------------
class RedeemRequest(_Model):
    """`POST /v1/credits/redeem`: a one-time code from `center credit issue`, for the device it names."""

    code: CreditCode
    device_id: DeviceId


class CreditAnswer(_Model):
    """The signed credit (post it to `POST device /v1/credits`); the same answer for the same code again."""

    credit: CompactJws  # coffer-credit
    credit_id: CreditId
    device_id: DeviceId
    kind: CreditKind
    amount: Money | None = None
    item_id: ItemId | None = None
    exp: NumericDate


# -- orders (flow 5) -------------------------------------------------------------------------------
class OrderRequest(_Model):
    """`POST /v1/orders` with headers `Idempotency-Key` and the device token."""

    item_id: ItemId
    device_id: DeviceId


class OrderAnswer(_Model):
    """201 (200 when the idempotency key names an existing order): the signed order, wrapped Ke inside."""

    order_id: OrderId
    order: CompactJws  # coffer-order; give it to the device as `Coffer-Order`
    content_url: str  # relative: GET it (Range allowed) and stream it to the device
    content_length: Annotated[StrictInt, Field(ge=0)]  # bytes of the content stream (not the plaintext)
    exp: NumericDate


class OrderStatus(_Model):
    """`GET /v1/orders/{order_id}`."""

    order_id: OrderId
    item_id: ItemId
    device_id: DeviceId
    price: Money
    state: OrderState
    iat: NumericDate
    exp: NumericDate
    delivered: bool  # the content was fetched at least once
    receipt: CompactJws | None = None  # coffer-receipt once paid


class PaymentRequest(_Model):
    """`POST /v1/orders/{order_id}/payment`: the device's sealed payment (outbox `payment`), as is."""

    payment: Annotated[str, Field(min_length=1, max_length=16384, pattern=r"^[A-Za-z0-9_-]+$")]


class PaymentAnswer(_Model):
    """The receipt (post it to `POST device /v1/receipts`); the same receipt for a repeated payment."""

    order_id: OrderId
    receipt: CompactJws  # coffer-receipt
    payment_hash: Sha256B64
    debits: tuple[Debit, ...]


# -- statements (flow 7) ---------------------------------------------------------------------------
class StatementRequest(_Model):
    """`POST /v1/statements`: a `coffer-statement` from `GET device /v1/statement?nonce=N`; nonces once."""

    statement: CompactJws


DifferenceKind = Literal[
    "counter-behind",  # the device's counter is below one the center has seen: rolled back or cloned
    "prepaid",  # a prepaid balance differs
    "coupon-missing",  # a coupon the center holds as unspent is not in the device's purses
    "coupon-unknown",  # the device shows a coupon the center has as spent or never issued to it
    "ticket-missing",
    "ticket-unknown",
    "outbox-unpaid",  # in the device's outbox and unpaid at the center: relay the payment (terminal sync)
    "outbox-paid",  # in the device's outbox, already paid at the center: relay the receipt
    "outbox-unknown",  # in the device's outbox, no such order for this device
]


class Difference(_Model):
    kind: DifferenceKind
    detail: Annotated[str, Field(max_length=500)]
    center: str | None = None
    device: str | None = None


class StatementAnswer(_Model):
    """The comparison, stored by the center (`center ledger report` shows suspect devices)."""

    statement_id: Annotated[str, Field(max_length=64)]
    device_id: DeviceId
    counter: Annotated[StrictInt, Field(ge=0)]
    device_state: DeviceState
    matches: bool
    differences: tuple[Difference, ...]


__all__ = [
    "IDEMPOTENCY_HEADER",
    "IDENTITY_CERTIFY_NONCE",
    "ActivateRequest",
    "CertifyEvidenceJson",
    "CertifyPair",
    "CreditAnswer",
    "DeviceIdentity",
    "DeviceState",
    "Difference",
    "DifferenceKind",
    "EnrollmentAnswer",
    "EnrollmentChallenge",
    "IdempotencyKey",
    "OrderAnswer",
    "OrderRequest",
    "OrderState",
    "OrderStatus",
    "PaymentAnswer",
    "PaymentRequest",
    "RedeemRequest",
    "StatementAnswer",
    "StatementRequest",
]
