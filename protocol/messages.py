"""Payloads of Coffer's signed messages, one typed model per JWS `typ` (DESIGN.md "Signed messages").

Every payload has `v: 1`, `iss` and `iat` (NumericDate); models forbid unknown members. Hashes of other
messages (`order_hash`, `payment_hash`, `device_token_hash`) are base64url SHA-256 (32 bytes);
`content_sha256` is hex.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Annotated, Any, ClassVar, Literal

from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from protocol._ecdsa import low_s
from protocol.b64 import b64url_decode, b64url_encode
from protocol.errors import EncodingError
from protocol.keys import jwk_from_public_key, public_key_from_jwk
from protocol.money import Money
from protocol.pricing import CreditId, Debit, ItemId, NumericDate, Purses

#: Longest accepted credit validity: exp <= iat + one year (366 days, so leap years never bite).
MAX_CREDIT_LIFETIME = 366 * 86400
MIN_SEGMENT_SIZE = 1024
MAX_SEGMENT_SIZE = 16 * 1024 * 1024

DeviceId = Annotated[str, Field(pattern=r"^dev_[a-z2-7]{32}$")]
OrderId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Sha256B64 = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{43}$")]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
B64Url = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]*$", max_length=65536)]
Issuer = Annotated[str, Field(min_length=1, max_length=256)]
Aead = Literal["aes-256-gcm", "chacha20-poly1305"]
CreditKind = Literal["prepaid", "coupon", "ticket"]


def message_hash(token: str) -> str:
    """base64url SHA-256 of a compact JWS in canonical form (order_hash, payment_hash).

    ES256 signatures are malleable ((r, s) and (r, n - s) both verify), and a relay may re-encode one;
    the hash is taken over the token with its signature in low-s form, so it names the signed message,
    not the bytes the relay chose. `protocol.jws.sign` always emits low s: our own tokens hash as sent.
    """
    parts = token.split(".")
    if len(parts) == 3:
        # Not valid base64url: hashed as given (verification refuses such a token anyway).
        with contextlib.suppress(EncodingError):
            parts[2] = b64url_encode(low_s(b64url_decode(parts[2])))
    return b64url_encode(hashlib.sha256(".".join(parts).encode("ascii")).digest())


class Jwk(BaseModel):
    """A public EC P-256 JWK."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kty: Literal["EC"]
    crv: Literal["P-256"]
    x: B64Url
    y: B64Url

    @classmethod
    def from_public_key(cls, key: ec.EllipticCurvePublicKey) -> Jwk:
        return cls.model_validate(jwk_from_public_key(key))

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return public_key_from_jwk(self.model_dump())


class SignedPayload(BaseModel):
    """Fields every signed payload carries. Subclasses set TYP (the JWS header `typ`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    TYP: ClassVar[str] = ""

    v: Literal[1] = 1
    iss: Issuer
    iat: NumericDate

    @field_validator("v", mode="before")
    @classmethod
    def _v_is_the_integer_1(cls, value: Any) -> Any:
        # Literal[1] alone lets JSON `true` and `1.0` through (1 == True == 1.0 in Python).
        if type(value) is not int:
            raise ValueError("v must be the integer 1")
        return value

    def audience(self) -> str | None:
        """The device a message is addressed to or comes from, if any."""
        return getattr(self, "device_id", None)

    def expiry(self) -> int | None:
        return getattr(self, "exp", None)


class Keyset(SignedPayload):
    TYP: ClassVar[str] = "coffer-keyset"

    version: Annotated[StrictInt, Field(ge=1)]
    signing_jwk: Jwk
    payment_jwk: Jwk


class Enrollment(SignedPayload):
    TYP: ClassVar[str] = "coffer-enrollment"

    device_id: DeviceId
    keyset: Annotated[str, Field(min_length=1, max_length=16384)]
    device_token_hash: Sha256B64


class Order(SignedPayload):
    TYP: ClassVar[str] = "coffer-order"

    order_id: OrderId
    item_id: ItemId
    device_id: DeviceId
    price: Money
    content_sha256: Sha256Hex
    content_length: Annotated[StrictInt, Field(ge=0, le=2**50)]
    aead: Aead
    segment_size: Annotated[StrictInt, Field(ge=MIN_SEGMENT_SIZE, le=MAX_SEGMENT_SIZE)]
    wrapped_key: B64Url
    exp: NumericDate


class Credit(SignedPayload):
    TYP: ClassVar[str] = "coffer-credit"

    credit_id: CreditId
    device_id: DeviceId
    kind: CreditKind
    amount: Money | None = None
    item_id: ItemId | None = None
    exp: NumericDate

    @model_validator(mode="after")
    def _shape(self) -> Credit:
        if self.kind == "ticket":
            if self.item_id is None or self.amount is not None:
                raise ValueError("a ticket names an item_id and no amount")
        elif self.amount is None or self.item_id is not None:
            raise ValueError("prepaid and coupon credits carry an amount and no item_id")
        if not self.iat < self.exp <= self.iat + MAX_CREDIT_LIFETIME:
            raise ValueError("credit exp must lie after iat and within one year of it")
        return self


class Payment(SignedPayload):
    TYP: ClassVar[str] = "coffer-payment"

    order_id: OrderId
    order_hash: Sha256B64
    device_id: DeviceId
    counter: Annotated[StrictInt, Field(ge=0, le=2**64 - 1)]
    debits: tuple[Debit, ...]


class Receipt(SignedPayload):
    TYP: ClassVar[str] = "coffer-receipt"

    order_id: OrderId
    device_id: DeviceId
    payment_hash: Sha256B64


class Statement(SignedPayload):
    TYP: ClassVar[str] = "coffer-statement"

    device_id: DeviceId
    counter: Annotated[StrictInt, Field(ge=0, le=2**64 - 1)]
    purses: Purses
    outbox: tuple[OrderId, ...]
    nonce: Annotated[str, Field(min_length=16, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]


PAYLOAD_TYPES: dict[str, type[SignedPayload]] = {
    cls.TYP: cls for cls in (Keyset, Enrollment, Order, Credit, Payment, Receipt, Statement)
}
