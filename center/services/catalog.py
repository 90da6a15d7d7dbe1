"""The catalog (the patent's ST1–ST3): register items with their previews, list, show, remove.

Registration validates everything and generates every preview before writing anything; then it writes the
blobs
and commits the rows in one transaction. If the commit fails, the blobs it created are deleted: a row and its
blobs exist both or neither.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from center.blobs import BlobStore, StoredBlob
from center.db.changes import CommitWatch, commit_watch
from center.db.models import Item, ItemFile, Preview
from center.errors import (
    BadRequestError,
    DatabaseUnavailableError,
    InvalidInputError,
    ItemNotFoundError,
    NotFoundError,
    UnsupportedMediaError,
)
from center.media import bundle, previews
from center.media.detect import Detected, detect
from center.repository import ItemRepository
from protocol.api.catalog import BundleMember, ItemDetail, ItemList, ItemSummary, PreviewDescriptor
from protocol.money import MAX_AMOUNT, Money

CURRENCY = re.compile(r"\A[A-Z]{3}\Z")
PRICE = re.compile(r"\A(0|[1-9][0-9]*)\Z")
CURSOR = re.compile(r"\A[0-9]{1,18}\Z")
MAX_TITLE = 200
MAX_DESCRIPTION = 4000
MAX_FILES = 1000
TEXT_INLINE_LIMIT = 16 * 1024
PAGE_CACHE_SIZE = 256


def new_item_id() -> str:
    """`itm_` + 16 lowercase base32 characters (80 random bits)."""
    return "itm_" + base64.b32encode(secrets.token_bytes(10)).decode("ascii").lower()


def parse_price(amount: str | int, currency: str) -> Money:
    """A price in integer minor units and an ISO 4217 code; negatives, fractions and floats are refused."""
    text = str(amount) if isinstance(amount, int) and not isinstance(amount, bool) else amount
    if not isinstance(text, str) or not PRICE.match(text) or int(text) > MAX_AMOUNT:
        raise InvalidInputError(
            f"price must be a whole number of minor units from 0 to {MAX_AMOUNT}, not {amount!r}"
        )
    if not CURRENCY.match(currency):
        raise InvalidInputError(f"currency must be an ISO 4217 code such as JPY, not {currency!r}")
    return Money(amount=int(text), currency=currency)


@dataclass(frozen=True)
class Listing:
    """A catalog page rendered once (`ItemList` as JSON) with its strong ETag (SHA-256 of the bytes)."""

    page: ItemList
    body: bytes
    etag: str


@dataclass(frozen=True)
class PreviewBlob:
    """What the preview route needs to serve a preview."""

    media_type: str
    sha256: str
    length: int


@dataclass(frozen=True)
class NewItem:
    """The seller's input to `center item add`."""

    files: list[Path]
    title: str
    price: Money
    description: str = ""
    preview: Path | None = None


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _descriptor(item_id: str, p: Preview) -> PreviewDescriptor:
    return PreviewDescriptor(
        n=p.n,
        kind=p.kind,
        media_type=p.media_type,
        length=p.length,
        sha256=p.sha256,
        url=f"/v1/items/{item_id}/previews/{p.n}",
        width=p.width,
        height=p.height,
        duration_ms=p.duration_ms,
        generated=p.generated,
    )


def summary(item: Item) -> ItemSummary:
    return ItemSummary(
        item_id=item.item_id,
        title=item.title,
        description=item.description,
        price=Money(amount=item.price_amount, currency=item.currency),
        media_kind=item.media_kind,
        bundle=item.bundle,
        content_length=item.content_length,
        content_sha256=item.content_sha256,
        created_at=item.created_at,
        previews=tuple(_descriptor(item.item_id, p) for p in item.previews),
    )


def detail(item: Item) -> ItemDetail:
    return ItemDetail(
        **summary(item).model_dump(),
        content_media_type=item.content_media_type,
        files=tuple(
            BundleMember(name=f.name, length=f.length, sha256=f.sha256, media_kind=f.media_kind)
            for f in item.files
        ),
    )


class CatalogService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        blobs: BlobStore,
        work_dir: Path,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sessions = sessions
        self._blobs = blobs
        self._work_dir = work_dir
        self._clock = clock
        #: (after, limit) -> (catalog version, the page, the commit stamp at which it was last found current)
        self._pages: dict[tuple[int, int], tuple[tuple[int, ...], Listing, int | None]] = {}
        self._lock = threading.Lock()
        bind = sessions.kw.get("bind")
        self._bind = bind
        self._watch: CommitWatch | None = None
        self._watch_tried = False
        #: True on SQLite: `listing`'s version check is a local read of ~0.05 ms that never waits in WAL mode,
        #: cheaper than the thread-pool trip around it, so the route calls it on the event loop; PostgreSQL's
        #: is a network round trip and stays in the thread pool
        self.listing_inline = bind is not None and bind.dialect.name == "sqlite"

    # -- registration (CLI only) ---------------------------------------------------------------------------

    def _validate(self, new: NewItem) -> None:
        title = new.title.strip()
        if not title or len(title) > MAX_TITLE:
            raise InvalidInputError(f"title must be 1 to {MAX_TITLE} characters")
        if len(new.description) > MAX_DESCRIPTION:
            raise InvalidInputError(f"description must be at most {MAX_DESCRIPTION} characters")
        if not new.files:
            raise InvalidInputError("give at least one file")
        if len(new.files) > MAX_FILES:
            raise InvalidInputError(f"a bundle holds at most {MAX_FILES} files")
        for path in [*new.files, *([new.preview] if new.preview else [])]:
            if not path.is_file():
                raise InvalidInputError(f"not a readable file: {path}")

    def add_item(self, new: NewItem) -> ItemDetail:
        """Register an item (ST1) with its previews (ST2); listed at once (ST3)."""
        self._validate(new)
        is_bundle = len(new.files) > 1
        members = bundle.sorted_members(new.files) if is_bundle else [(new.files[0].name, new.files[0])]
        kinds = {name: detect(path) for name, path in members}
        self._work_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self._work_dir, prefix="add-") as tmp:
            content_path = members[0][1]
            if is_bundle:
                content_path = Path(tmp) / "bundle.tar"
                with open(content_path, "wb") as out:
                    bundle.write_ustar(members, out)
            content_length = content_path.stat().st_size
            if content_length == 0:
                raise InvalidInputError("the content is empty")
            limit = previews.size_limit(content_length)
            made = self._make_previews(members, kinds, new.preview, limit)
            media_kind = kinds[members[0][0]].kind if not is_bundle else self._bundle_kind(kinds)
            content_type = bundle.MEDIA_TYPE if is_bundle else kinds[members[0][0]].media_type
            files = [
                ItemFile(
                    position=i,
                    name=name,
                    length=path.stat().st_size,
                    sha256=_sha256_file(path),
                    media_kind=kinds[name].kind,
                )
                for i, (name, path) in enumerate(members)
            ]
            created: list[StoredBlob] = []
            try:
                content = self._blobs.put_file(content_path)
                created.append(content)
                stored = []
                for p in made:
                    blob = self._blobs.put_bytes(p.data)
                    created.append(blob)
                    stored.append(blob)
                item = Item(
                    item_id=new_item_id(),
                    title=new.title.strip(),
                    description=new.description,
                    price_amount=new.price.amount,
                    currency=new.price.currency,
                    media_kind=media_kind,
                    bundle=is_bundle,
                    content_sha256=content.sha256,
                    content_length=content.length,
                    content_media_type=content_type,
                    created_at=int(self._clock()),
                    files=files,
                    previews=[
                        Preview(
                            n=n,
                            kind=p.kind,
                            media_type=p.media_type,
                            sha256=b.sha256,
                            length=b.length,
                            width=p.width,
                            height=p.height,
                            duration_ms=p.duration_ms,
                            generated=p.generated,
                        )
                        for n, (p, b) in enumerate(zip(made, stored, strict=True))
                    ],
                )
                with self._sessions.begin() as session:
                    ItemRepository(session).add(item)
                    result = detail(item)
            except BaseException as exc:
                self._discard(created)
                if isinstance(exc, SQLAlchemyError):
                    raise DatabaseUnavailableError(f"cannot record the item: {type(exc).__name__}") from exc
                raise
        return result

    @staticmethod
    def _bundle_kind(kinds: dict[str, Detected]) -> str:
        distinct = {d.kind for d in kinds.values()}
        return distinct.pop() if len(distinct) == 1 else "other"

    def _make_previews(
        self, members: list[tuple[str, Path]], kinds: dict[str, Detected], trial: Path | None, limit: int
    ) -> list[previews.PreviewData]:
        if trial is not None:
            return [previews.trial_preview(trial, detect(trial), limit)]
        for name, path in members:  # a bundle is previewed by its first previewable member
            made = previews.generate(path, kinds[name], limit)
            if made:
                return made
        raise UnsupportedMediaError(
            "this kind of file cannot be previewed: give the seller's trial file with --preview"
        )

    def _discard(self, created: list[StoredBlob]) -> None:
        """Delete blobs this registration created, unless a committed row references them meanwhile."""
        fresh = [b for b in created if b.created]
        if not fresh:
            return
        try:
            with self._sessions.begin() as session:
                repo = ItemRepository(session)
                orphans = [b.sha256 for b in fresh if not repo.blob_in_use(b.sha256)]
        except SQLAlchemyError:
            orphans = [b.sha256 for b in fresh]
        for sha in orphans:
            self._blobs.delete(sha)

    def remove_item(self, item_id: str) -> None:
        """Take an item off the catalog. Its row and blobs stay for deliveries already made (orders come
        later)."""
        with self._sessions.begin() as session:
            item = ItemRepository(session).get(item_id)
            if item is None:
                raise ItemNotFoundError(item_id)
            item.removed_at = int(self._clock())

    # -- browsing (public) ---------------------------------------------------------------------------------

    def list_items(self, limit: int = 50, cursor: str | None = None) -> ItemList:
        """A page of the catalog (see `listing`)."""
        return self.listing(limit, cursor).page

    def listing(self, limit: int = 50, cursor: str | None = None) -> Listing:
        """A page of the catalog, rendered once per catalog version: one cheap query (a prebuilt Core
        statement) decides whether an item was added or removed since, by any process; otherwise the page's
        JSON bytes and ETag are answered from memory."""
        after = 0
        if cursor is not None:
            if not CURSOR.match(cursor):
                raise BadRequestError("cursor is not one this server issued")
            after = int(cursor)
        key = (after, limit)
        stamp = self._commit_stamp()  # read before the version query: a commit after it moves the stamp
        cached = self._pages.get(key)
        if cached is not None and stamp is not None and cached[2] == stamp:
            return cached[1]  # nothing was committed anywhere since this page was last found current
        try:
            with self._sessions() as session:
                repo = ItemRepository(session)
                version = repo.version()
                if cached is not None and cached[0] == version:
                    self._remember(key, version, cached[1], stamp)
                    return cached[1]
                rows = repo.page(after, limit + 1)
                items = tuple(summary(r) for r in rows[:limit])
                next_cursor = str(rows[limit - 1].seq) if len(rows) > limit else None
        except SQLAlchemyError as exc:
            raise DatabaseUnavailableError("the catalog is unavailable") from exc
        page = ItemList(items=items, next_cursor=next_cursor)
        body = page.model_dump_json().encode()
        listing = Listing(page, body, '"' + hashlib.sha256(body).hexdigest() + '"')
        self._remember(key, version, listing, stamp)
        return listing

    def _remember(
        self, key: tuple[int, int], version: tuple[int, ...], listing: Listing, stamp: int | None
    ) -> None:
        with self._lock:
            if key not in self._pages and len(self._pages) >= PAGE_CACHE_SIZE:
                self._pages.pop(next(iter(self._pages)))
            self._pages[key] = (version, listing, stamp)

    def _commit_stamp(self) -> int | None:
        """SQLite's data_version through a watch of its own (center.db.changes), or None (PostgreSQL, an
        in-memory database): then every listing asks the version query."""
        if not self._watch_tried:
            with self._lock:
                if not self._watch_tried and self._bind is not None:
                    self._watch = commit_watch(self._bind)
                self._watch_tried = True
        watch = self._watch
        return watch.stamp() if watch is not None else None

    def close(self) -> None:
        """Close the commit watch's connection (the app's lifespan, with the engine)."""
        with self._lock:
            if self._watch is not None:
                self._watch.close()
                self._watch = None

    def get_item(self, item_id: str) -> ItemDetail:
        try:
            with self._sessions() as session:
                item = ItemRepository(session).get(item_id)
                if item is None:
                    raise ItemNotFoundError(item_id)
                return detail(item)
        except SQLAlchemyError as exc:
            raise DatabaseUnavailableError("the catalog is unavailable") from exc

    def excerpts(self, items: Iterable[ItemSummary]) -> dict[str, str]:
        """The text previews of `items`, by preview URL, for the storefront to show inline."""
        out: dict[str, str] = {}
        for item in items:
            for p in item.previews:
                if p.kind == "text" and p.length <= TEXT_INLINE_LIMIT:
                    out[p.url] = self._blobs.read(p.sha256).decode("utf-8", errors="replace")
        return out

    def read_preview(self, preview: PreviewBlob, start: int = 0, end: int | None = None) -> bytes:
        """Bytes [start, end) of a preview (at most 2 MiB by the size rule)."""
        return self._blobs.read(preview.sha256, start, end)

    def get_preview(self, item_id: str, n: int) -> PreviewBlob:
        try:
            with self._sessions() as session:
                row = ItemRepository(session).preview(item_id, n)
                if row is None:
                    raise NotFoundError(f"item {item_id!r} has no preview {n}")
                return PreviewBlob(row.media_type, row.sha256, row.length)
        except SQLAlchemyError as exc:
            raise DatabaseUnavailableError("the catalog is unavailable") from exc
