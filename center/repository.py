"""Catalog rows (STYLE.md item 13: the repository never commits; the service owns the transaction)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from center.db.models import Item, Preview

_ITEMS = Item.__table__
assert isinstance(_ITEMS, Table)
#: the catalog's version, built once: (max seq, removed count, last removal); compiled once per process
_VERSION = select(
    func.coalesce(func.max(_ITEMS.c.seq), 0),
    func.count(_ITEMS.c.removed_at),
    func.coalesce(func.max(_ITEMS.c.removed_at), 0),
)


class ItemRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, item: Item) -> None:
        self.session.add(item)
        self.session.flush()

    def get(self, item_id: str, *, include_removed: bool = False) -> Item | None:
        query = select(Item).where(Item.item_id == item_id)
        if not include_removed:
            query = query.where(Item.removed_at.is_(None))
        return self.session.scalars(query).one_or_none()

    def page(self, after_seq: int, limit: int) -> Sequence[Item]:
        """Listed items with seq > after_seq, oldest first."""
        query = (
            select(Item)
            .where(Item.removed_at.is_(None), Item.seq > after_seq)
            .order_by(Item.seq)
            .limit(limit)
        )
        return self.session.scalars(query).all()

    def version(self) -> tuple[int, ...]:
        """Changes whenever an item is added or removed (items are otherwise immutable)."""
        row = self.session.connection().execute(_VERSION).one()
        return (int(row[0] or 0), int(row[1] or 0), int(row[2] or 0))

    def preview(self, item_id: str, n: int) -> Preview | None:
        query = (
            select(Preview)
            .join(Item, Preview.item_seq == Item.seq)
            .where(Item.item_id == item_id, Item.removed_at.is_(None), Preview.n == n)
        )
        return self.session.scalars(query).one_or_none()

    def blob_in_use(self, sha256: str) -> bool:
        """Whether any committed row references the blob (content or preview)."""
        in_items = self.session.scalar(select(Item.seq).where(Item.content_sha256 == sha256).limit(1))
        if in_items is not None:
            return True
        return self.session.scalar(select(Preview.id).where(Preview.sha256 == sha256).limit(1)) is not None
