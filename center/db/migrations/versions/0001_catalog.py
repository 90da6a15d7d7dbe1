"""Catalog: items, their files and previews (issue 5).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "items",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("item_id", sa.String(32), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("price_amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("media_kind", sa.String(16), nullable=False),
        sa.Column("bundle", sa.Boolean(), nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("content_length", sa.BigInteger(), nullable=False),
        sa.Column("content_media_type", sa.String(100), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("removed_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_items")),
        sa.UniqueConstraint("item_id", name=op.f("uq_items_item_id")),
    )
    op.create_index(op.f("ix_items_removed_at"), "items", ["removed_at"])
    op.create_table(
        "item_files",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("item_seq", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("media_kind", sa.String(16), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_seq"], ["items.seq"], name=op.f("fk_item_files_item_seq_items"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_item_files")),
        sa.UniqueConstraint("item_seq", "position", name=op.f("uq_item_files_item_seq_position")),
        sa.UniqueConstraint("item_seq", "name", name=op.f("uq_item_files_item_seq_name")),
    )
    op.create_table(
        "previews",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("item_seq", sa.Integer(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("media_type", sa.String(100), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("generated", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_seq"], ["items.seq"], name=op.f("fk_previews_item_seq_items"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_previews")),
        sa.UniqueConstraint("item_seq", "n", name=op.f("uq_previews_item_seq_n")),
    )


def downgrade() -> None:
    op.drop_table("previews")
    op.drop_table("item_files")
    op.drop_index(op.f("ix_items_removed_at"), table_name="items")
    op.drop_table("items")
