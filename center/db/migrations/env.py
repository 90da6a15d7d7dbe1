"""Alembic environment: runs on the connection `center.db.engine.upgrade` passes in (no alembic.ini)."""

from __future__ import annotations

from alembic import context

import center.db.commerce  # noqa: F401 - registers the commerce tables on Base.metadata
from center.db.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
