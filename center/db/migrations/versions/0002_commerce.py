"""Commerce (issue 11): devices, enrollment challenges, welcome grants, credits, orders, payment counters,
statements and the double-entry ledger.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "credits",
        sa.Column("credit_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("item_id", sa.String(length=64), nullable=True),
        sa.Column("code_hash", sa.String(length=64), nullable=True),
        sa.Column("iat", sa.BigInteger(), nullable=False),
        sa.Column("exp", sa.BigInteger(), nullable=False),
        sa.Column("redeemed_at", sa.BigInteger(), nullable=True),
        sa.Column("credit_jws", sa.Text(), nullable=True),
        sa.Column("held_by", sa.String(length=64), nullable=True),
        sa.Column("spent_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("credit_id", name=op.f("pk_credits")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_credits_code_hash")),
    )
    with op.batch_alter_table("credits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_credits_device_id"), ["device_id"], unique=False)

    op.create_table(
        "devices",
        sa.Column("device_id", sa.String(length=36), nullable=False),
        sa.Column("ek_hash", sa.String(length=64), nullable=False),
        sa.Column("ak_public", sa.Text(), nullable=False),
        sa.Column("kem_jwk", sa.Text(), nullable=False),
        sa.Column("payment_jwk", sa.Text(), nullable=False),
        sa.Column("aead", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=43), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("state_reason", sa.Text(), nullable=True),
        sa.Column("enrolled_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_devices")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_devices_token_hash")),
    )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_devices_ek_hash"), ["ek_hash"], unique=False)

    op.create_table(
        "enrollment_challenges",
        sa.Column("challenge_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=36), nullable=False),
        sa.Column("identity", sa.Text(), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("used_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("challenge_id", name=op.f("pk_enrollment_challenges")),
    )
    with op.batch_alter_table("enrollment_challenges", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_enrollment_challenges_device_id"), ["device_id"], unique=False)

    op.create_table(
        "ledger_accounts",
        sa.Column("account_id", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("device_id", sa.String(length=36), nullable=True),
        sa.Column("limited", sa.Boolean(), nullable=False),
        sa.Column("debits_posted", sa.BigInteger(), nullable=False),
        sa.Column("credits_posted", sa.BigInteger(), nullable=False),
        sa.Column("debits_pending", sa.BigInteger(), nullable=False),
        sa.Column("credits_pending", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "NOT limited OR credits_posted - debits_posted - debits_pending >= 0",
            name=op.f("ck_ledger_accounts_debits_within_credits"),
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_ledger_accounts")),
    )
    with op.batch_alter_table("ledger_accounts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ledger_accounts_device_id"), ["device_id"], unique=False)

    op.create_table(
        "ledger_txns",
        sa.Column("txn_id", sa.String(length=120), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("txn_id", name=op.f("pk_ledger_txns")),
    )
    with op.batch_alter_table("ledger_txns", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ledger_txns_order_id"), ["order_id"], unique=False)

    op.create_table(
        "payment_counters",
        sa.Column("device_id", sa.String(length=36), nullable=False),
        sa.Column("counter", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("device_id", "counter", name=op.f("pk_payment_counters")),
    )
    op.create_table(
        "statements",
        sa.Column("statement_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=36), nullable=False),
        sa.Column("nonce", sa.String(length=128), nullable=False),
        sa.Column("counter", sa.BigInteger(), nullable=False),
        sa.Column("statement_jws", sa.Text(), nullable=False),
        sa.Column("differences", sa.Text(), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("statement_id", name=op.f("pk_statements")),
        sa.UniqueConstraint("device_id", "nonce", name=op.f("uq_statements_device_id_nonce")),
    )
    with op.batch_alter_table("statements", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_statements_device_id"), ["device_id"], unique=False)

    op.create_table(
        "welcome_grants",
        sa.Column("ek_hash", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=36), nullable=False),
        sa.Column("credit_id", sa.String(length=64), nullable=False),
        sa.Column("granted_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("ek_hash", name=op.f("pk_welcome_grants")),
        sa.UniqueConstraint("credit_id", name=op.f("uq_welcome_grants_credit_id")),
    )
    op.create_table(
        "ledger_transfers",
        sa.Column("transfer_id", sa.String(length=160), nullable=False),
        sa.Column("txn_id", sa.String(length=120), nullable=False),
        sa.Column("debit_account", sa.String(length=100), nullable=False),
        sa.Column("credit_account", sa.String(length=100), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("flag", sa.String(length=8), nullable=False),
        sa.Column("pending_id", sa.String(length=160), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "(flag IN ('post', 'void')) = (pending_id IS NOT NULL)", name=op.f("ck_ledger_transfers_resolves")
        ),
        sa.CheckConstraint(
            "flag IN ('posted', 'pending', 'post', 'void')", name=op.f("ck_ledger_transfers_flag")
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_ledger_transfers_positive")),
        sa.CheckConstraint("debit_account <> credit_account", name=op.f("ck_ledger_transfers_two_accounts")),
        sa.ForeignKeyConstraint(
            ["credit_account"],
            ["ledger_accounts.account_id"],
            name=op.f("fk_ledger_transfers_credit_account_ledger_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["debit_account"],
            ["ledger_accounts.account_id"],
            name=op.f("fk_ledger_transfers_debit_account_ledger_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["pending_id"],
            ["ledger_transfers.transfer_id"],
            name=op.f("fk_ledger_transfers_pending_id_ledger_transfers"),
        ),
        sa.ForeignKeyConstraint(
            ["txn_id"], ["ledger_txns.txn_id"], name=op.f("fk_ledger_transfers_txn_id_ledger_txns")
        ),
        sa.PrimaryKeyConstraint("transfer_id", name=op.f("pk_ledger_transfers")),
        sa.UniqueConstraint("pending_id", name=op.f("uq_ledger_transfers_pending_id")),
    )
    with op.batch_alter_table("ledger_transfers", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_transfers_credit", ["credit_account", "flag"], unique=False)
        batch_op.create_index("ix_ledger_transfers_debit", ["debit_account", "flag"], unique=False)
        batch_op.create_index(batch_op.f("ix_ledger_transfers_txn_id"), ["txn_id"], unique=False)

    op.create_table(
        "orders",
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=36), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("item_id", sa.String(length=64), nullable=False),
        sa.Column("blob_sha256", sa.String(length=64), nullable=False),
        sa.Column("price_amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("content_length", sa.BigInteger(), nullable=False),
        sa.Column("aead", sa.String(length=32), nullable=False),
        sa.Column("segment_size", sa.Integer(), nullable=False),
        sa.Column("sealed_secret", sa.LargeBinary(), nullable=False),
        sa.Column("payer_jwk", sa.Text(), nullable=False),
        sa.Column("order_jws", sa.Text(), nullable=False),
        sa.Column("order_hash", sa.String(length=43), nullable=False),
        sa.Column("planned_debits", sa.Text(), nullable=False),
        sa.Column("iat", sa.BigInteger(), nullable=False),
        sa.Column("exp", sa.BigInteger(), nullable=False),
        sa.Column("delivered_at", sa.BigInteger(), nullable=True),
        sa.Column("paid_at", sa.BigInteger(), nullable=True),
        sa.Column("released_at", sa.BigInteger(), nullable=True),
        sa.Column("counter", sa.BigInteger(), nullable=True),
        sa.Column("payment_hash", sa.String(length=43), nullable=True),
        sa.Column("paid_debits", sa.Text(), nullable=True),
        sa.Column("receipt_jws", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.device_id"], name=op.f("fk_orders_device_id_devices")
        ),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_orders")),
        sa.UniqueConstraint("device_id", "idempotency_key", name=op.f("uq_orders_device_id_idempotency_key")),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_orders_device_id"), ["device_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_orders_paid_at"), ["paid_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_orders_paid_at"))
        batch_op.drop_index(batch_op.f("ix_orders_device_id"))

    op.drop_table("orders")
    with op.batch_alter_table("ledger_transfers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_transfers_txn_id"))
        batch_op.drop_index("ix_ledger_transfers_debit")
        batch_op.drop_index("ix_ledger_transfers_credit")

    op.drop_table("ledger_transfers")
    op.drop_table("welcome_grants")
    with op.batch_alter_table("statements", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_statements_device_id"))

    op.drop_table("statements")
    op.drop_table("payment_counters")
    with op.batch_alter_table("ledger_txns", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_txns_order_id"))

    op.drop_table("ledger_txns")
    with op.batch_alter_table("ledger_accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_accounts_device_id"))

    op.drop_table("ledger_accounts")
    with op.batch_alter_table("enrollment_challenges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_enrollment_challenges_device_id"))

    op.drop_table("enrollment_challenges")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_devices_ek_hash"))

    op.drop_table("devices")
    with op.batch_alter_table("credits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credits_device_id"))

    op.drop_table("credits")
