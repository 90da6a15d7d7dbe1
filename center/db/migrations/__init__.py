"""Alembic migrations of the center database."""
