"""Catalog tables (DESIGN.md "Scale": SQLite or PostgreSQL, schema changes through Alembic).

Public schemas (protocol.api.catalog) are built from these rows by the service; no secret columns here yet.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Item(Base):
    __tablename__ = "items"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_id: Mapped[str] = mapped_column(String(32), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    price_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    media_kind: Mapped[str] = mapped_column(String(16))
    bundle: Mapped[bool]
    content_sha256: Mapped[str] = mapped_column(String(64))
    content_length: Mapped[int] = mapped_column(BigInteger)
    content_media_type: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[int] = mapped_column(BigInteger)
    removed_at: Mapped[int | None] = mapped_column(BigInteger, default=None, index=True)

    files: Mapped[list[ItemFile]] = relationship(
        back_populates="item", order_by="ItemFile.position", cascade="all, delete-orphan", lazy="selectin"
    )
    previews: Mapped[list[Preview]] = relationship(
        back_populates="item", order_by="Preview.n", cascade="all, delete-orphan", lazy="selectin"
    )


class ItemFile(Base):
    """A file the item delivers: the single file, or one member of the bundle (sorted by name)."""

    __tablename__ = "item_files"
    __table_args__ = (UniqueConstraint("item_seq", "position"), UniqueConstraint("item_seq", "name"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_seq: Mapped[int] = mapped_column(ForeignKey("items.seq", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(100))
    length: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    media_kind: Mapped[str] = mapped_column(String(16))

    item: Mapped[Item] = relationship(back_populates="files")


class Preview(Base):
    """One advertising preview (the patent's M'), numbered n = 0, 1, … per item."""

    __tablename__ = "previews"
    __table_args__ = (UniqueConstraint("item_seq", "n"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_seq: Mapped[int] = mapped_column(ForeignKey("items.seq", ondelete="CASCADE"))
    n: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    media_type: Mapped[str] = mapped_column(String(100))
    sha256: Mapped[str] = mapped_column(String(64))
    length: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer, default=None)
    height: Mapped[int | None] = mapped_column(Integer, default=None)
    duration_ms: Mapped[int | None] = mapped_column(Integer, default=None)
    generated: Mapped[bool]

    item: Mapped[Item] = relationship(back_populates="previews")
