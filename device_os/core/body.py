"""The state body: everything money or access depends on, as one typed document (DESIGN.md "Device state").

Serialized as compact JSON inside the AEAD of the state document (statedoc.py). Models are frozen: an
operation builds a new body and commits it, or leaves the old one untouched.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from protocol.money import Money
from protocol.pricing import CreditId, Debit, ItemId, NumericDate, Purses

OrderId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
BlobId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
Counter = Annotated[StrictInt, Field(ge=0, le=2**64 - 1)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EnrollmentRecord(_Frozen):
    """The accepted enrollment: the center's root-signed key set, pinned to the root's fingerprint."""

    enrollment: str  # the coffer-enrollment JWS
    keyset: str  # the coffer-keyset JWS inside it
    keyset_version: Annotated[StrictInt, Field(ge=1)]
    root_fingerprint: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    root_jwk: dict[str, str]
    device_token_hash: str


class OutboxEntry(_Frozen):
    """A committed purchase whose payment has no receipt yet; also the stored answer to the same order."""

    order_id: OrderId
    item_id: ItemId
    order_hash: str
    counter: Counter  # the state counter the payment names (the commit that debited)
    price: Money
    debits: tuple[Debit, ...]
    payment: str  # base64url: HPKE(enrolled center payment key, payment JWS)
    payment_hash: str  # base64url SHA-256 of the payment JWS (what a receipt names)
    order_exp: (
        NumericDate  # the order's exp: once the time floor reaches it, the order can never verify again
    )


class SettledEntry(_Frozen):
    """A payment the center acknowledged with a receipt, kept to answer `order-settled` while the order could
    still verify; dropped once the time floor reaches the order's exp (the state stays bounded)."""

    order_id: OrderId
    item_id: ItemId
    counter: Counter
    price: Money
    debits: tuple[Debit, ...]
    payment_hash: str
    order_exp: NumericDate


class LibraryEntry(_Frozen):
    """An owned item: its blob in the content store; deferred ones keep the center's stream and wrapped Ke."""

    item_id: ItemId
    order_id: OrderId
    blob: BlobId
    mode: Literal["now", "deferred"]
    length: Annotated[StrictInt, Field(ge=0)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    wrapped_key: str | None = None  # deferred only: HPKE-wrapped Ke (to the TPM KEM key)
    center_aead: str | None = None  # deferred only
    center_segment_size: StrictInt | None = None  # deferred only


class StateBody(_Frozen):
    v: Literal[1] = 1
    device_id: str
    time_floor: NumericDate = 0
    purses: Purses = Purses()
    spent_credits: dict[CreditId, NumericDate] = Field(default_factory=dict)  # credit_id -> exp
    outbox: dict[OrderId, OutboxEntry] = Field(default_factory=dict)
    settled: dict[OrderId, SettledEntry] = Field(default_factory=dict)
    library: dict[ItemId, LibraryEntry] = Field(default_factory=dict)
    enrollment: EnrollmentRecord | None = None

    def encode(self) -> bytes:
        return self.model_dump_json().encode("utf-8")

    @classmethod
    def decode(cls, data: bytes) -> StateBody:
        return cls.model_validate_json(data)
