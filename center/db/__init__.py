"""Storage of the catalog: SQLAlchemy models, the engine (SQLite WAL or PostgreSQL), Alembic migrations."""
