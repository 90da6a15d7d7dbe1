"""Open orders of a device by expiry: a partial index for the order path's device-state query.

Every order counts the device's unpaid, unreleased orders past `exp` (expired holds to release, unpaid
deliveries). With only `ix_orders_device_id` that read every order the device ever made, so an order got
slower with the device's history; this index holds only open orders (not paid, not released).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_OPEN = sa.text("paid_at IS NULL AND released_at IS NULL")


def upgrade() -> None:
    op.create_index(
        "ix_orders_open_by_exp",
        "orders",
        ["device_id", "exp"],
        unique=False,
        sqlite_where=_OPEN,
        postgresql_where=_OPEN,
    )


def downgrade() -> None:
    op.drop_index("ix_orders_open_by_exp", table_name="orders")
