"""Commerce tables (issue 11): devices and their key binding, enrollment challenges, welcome grants, credits,
orders, payment counters, statements, and the double-entry ledger (STYLE.md item 16).

Secrets are never stored in clear: device tokens and credit codes as SHA-256/HMAC digests, each order's Ke and
salt sealed under the center data key (`center.sealing`). Ledger rows are immutable: a hold is a `pending`
transfer, resolved once by a `post` or `void` row naming it (`pending_id` is unique), never an update.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from center.db.models import Base

DEVICE_ID = 36  # dev_ + 32 base32 characters


class Device(Base):
    """A device_id bound at first enrollment to its EK, attestation, KEM and payment keys."""

    __tablename__ = "devices"

    device_id: Mapped[str] = mapped_column(String(DEVICE_ID), primary_key=True)
    ek_hash: Mapped[str] = mapped_column(String(64), index=True)  # hex SHA-256 of the EK's SPKI DER
    ak_public: Mapped[str] = mapped_column(Text)  # base64url TPM2B_PUBLIC of the attestation key
    kem_jwk: Mapped[str] = mapped_column(Text)  # canonical JSON
    payment_jwk: Mapped[str] = mapped_column(Text)
    aead: Mapped[str] = mapped_column(String(32))
    token_hash: Mapped[str | None] = mapped_column(String(43), unique=True)  # base64url SHA-256
    state: Mapped[str] = mapped_column(String(16))  # active | revoked | suspect
    state_reason: Mapped[str | None] = mapped_column(Text, default=None)
    enrolled_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class EnrollmentChallenge(Base):
    """A MakeCredential outstanding for a device: the verified identity and the secret's digest."""

    __tablename__ = "enrollment_challenges"

    challenge_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(DEVICE_ID), index=True)
    identity: Mapped[str] = mapped_column(Text)  # the DeviceIdentity JSON that passed every check
    secret_hash: Mapped[str] = mapped_column(String(64))  # hex SHA-256 of the credential secret
    expires_at: Mapped[int] = mapped_column(BigInteger)
    used_at: Mapped[int | None] = mapped_column(BigInteger, default=None)


class WelcomeGrant(Base):
    """The welcome credit, once per EK ever (the primary key is the EK)."""

    __tablename__ = "welcome_grants"

    ek_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(DEVICE_ID))
    credit_id: Mapped[str] = mapped_column(String(64), unique=True)
    granted_at: Mapped[int] = mapped_column(BigInteger)


class CreditRow(Base):
    """A credit bound to one device: issued as a code (stored hashed) or granted as the welcome credit.

    Money moves only at redemption (`redeemed_at`, ledger transaction `fund:<id>`). A coupon or ticket held
    by an order names it in `held_by`; `spent_by` once the order is paid.
    """

    __tablename__ = "credits"

    credit_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(DEVICE_ID), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # prepaid | coupon | ticket
    source: Mapped[str] = mapped_column(String(16))  # code | welcome
    amount: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    item_id: Mapped[str | None] = mapped_column(String(64))
    code_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    iat: Mapped[int] = mapped_column(BigInteger)
    exp: Mapped[int] = mapped_column(BigInteger)
    redeemed_at: Mapped[int | None] = mapped_column(BigInteger, default=None)
    credit_jws: Mapped[str | None] = mapped_column(Text, default=None)
    held_by: Mapped[str | None] = mapped_column(String(64), default=None)
    spent_by: Mapped[str | None] = mapped_column(String(64), default=None)


class OrderRow(Base):
    """One order (flow 5): the signed order, its sealed Ke || salt, its delivery and its settlement."""

    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("device_id", "idempotency_key"),
        # open orders (not paid, not released) of a device by expiry: the order path's device-state query
        Index(
            "ix_orders_open_by_exp",
            "device_id",
            "exp",
            sqlite_where=text("paid_at IS NULL AND released_at IS NULL"),
            postgresql_where=text("paid_at IS NULL AND released_at IS NULL"),
        ),
    )

    order_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id"), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(128))
    request_hash: Mapped[str] = mapped_column(String(64))
    item_id: Mapped[str] = mapped_column(String(64))
    blob_sha256: Mapped[str] = mapped_column(String(64))
    price_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    content_length: Mapped[int] = mapped_column(BigInteger)
    aead: Mapped[str] = mapped_column(String(32))
    segment_size: Mapped[int] = mapped_column(Integer)
    sealed_secret: Mapped[bytes] = mapped_column(LargeBinary)  # Ke || salt under the data key
    payer_jwk: Mapped[str] = mapped_column(Text)  # the payment key bound when the order was made
    order_jws: Mapped[str] = mapped_column(Text)
    order_hash: Mapped[str] = mapped_column(String(43))
    planned_debits: Mapped[str] = mapped_column(Text)  # JSON: the debits the hold covers
    iat: Mapped[int] = mapped_column(BigInteger)
    exp: Mapped[int] = mapped_column(BigInteger)
    delivered_at: Mapped[int | None] = mapped_column(BigInteger, default=None)
    paid_at: Mapped[int | None] = mapped_column(BigInteger, default=None, index=True)
    released_at: Mapped[int | None] = mapped_column(BigInteger, default=None)  # expired, hold voided
    counter: Mapped[int | None] = mapped_column(BigInteger, default=None)
    payment_hash: Mapped[str | None] = mapped_column(String(43), default=None)
    paid_debits: Mapped[str | None] = mapped_column(Text, default=None)
    receipt_jws: Mapped[str | None] = mapped_column(Text, default=None)


class PaymentCounter(Base):
    """Which order each device state counter paid: a counter seen again for another order marks the device."""

    __tablename__ = "payment_counters"

    device_id: Mapped[str] = mapped_column(String(DEVICE_ID), primary_key=True)
    counter: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_id: Mapped[str] = mapped_column(String(64))


class StatementRow(Base):
    __tablename__ = "statements"
    __table_args__ = (UniqueConstraint("device_id", "nonce"),)

    statement_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(DEVICE_ID), index=True)
    nonce: Mapped[str] = mapped_column(String(128))
    counter: Mapped[int] = mapped_column(BigInteger)
    statement_jws: Mapped[str] = mapped_column(Text)
    differences: Mapped[str] = mapped_column(Text)  # JSON list
    received_at: Mapped[int] = mapped_column(BigInteger)


class LedgerAccount(Base):
    """cash:CUR, promotions:CUR, revenue:CUR, wallet:DEVICE:CUR (liability), coupon:CREDIT (liability).

    A `limited` account (a device's wallet or coupon) keeps its running totals on the row, changed in the
    same database transaction as each transfer, and the database refuses any change that would make its
    debits (posted + pending) exceed its credits (TigerBeetle's `debits_must_not_exceed_credits`). The
    totals are a cache of the transfers: `center ledger report` recomputes and compares them. House
    accounts (unlimited, shared by every order) keep no totals, so no order waits on their rows.
    """

    __tablename__ = "ledger_accounts"
    __table_args__ = (
        CheckConstraint(
            "NOT limited OR credits_posted - debits_posted - debits_pending >= 0",
            name="debits_within_credits",
        ),
    )

    account_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    device_id: Mapped[str | None] = mapped_column(String(DEVICE_ID), default=None, index=True)
    limited: Mapped[bool] = mapped_column(default=False)
    debits_posted: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_posted: Mapped[int] = mapped_column(BigInteger, default=0)
    debits_pending: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_pending: Mapped[int] = mapped_column(BigInteger, default=0)


class LedgerTxn(Base):
    """One balanced ledger transaction: its transfers commit together or not at all."""

    __tablename__ = "ledger_txns"

    txn_id: Mapped[str] = mapped_column(String(120), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # fund | hold | settle | release | forfeit
    order_id: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)


class LedgerTransfer(Base):
    """An immutable transfer; `pending` is a hold, resolved by exactly one `post` or `void` row."""

    __tablename__ = "ledger_transfers"
    __table_args__ = (
        CheckConstraint("amount > 0", name="positive"),
        CheckConstraint("debit_account <> credit_account", name="two_accounts"),
        CheckConstraint("flag IN ('posted', 'pending', 'post', 'void')", name="flag"),
        CheckConstraint("(flag IN ('post', 'void')) = (pending_id IS NOT NULL)", name="resolves"),
        Index("ix_ledger_transfers_debit", "debit_account", "flag"),
        Index("ix_ledger_transfers_credit", "credit_account", "flag"),
    )

    transfer_id: Mapped[str] = mapped_column(String(160), primary_key=True)
    txn_id: Mapped[str] = mapped_column(ForeignKey("ledger_txns.txn_id"), index=True)
    debit_account: Mapped[str] = mapped_column(ForeignKey("ledger_accounts.account_id"))
    credit_account: Mapped[str] = mapped_column(ForeignKey("ledger_accounts.account_id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    flag: Mapped[str] = mapped_column(String(8))
    pending_id: Mapped[str | None] = mapped_column(
        ForeignKey("ledger_transfers.transfer_id"), unique=True, default=None
    )
    created_at: Mapped[int] = mapped_column(BigInteger)


def table(model: type[Base]) -> Table:
    """The Core table of a mapped class (for the prebuilt statements of the hot paths)."""
    t = model.__table__
    assert isinstance(t, Table)
    return t
