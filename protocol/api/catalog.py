"""The center's public catalog models (DESIGN.md "Center API", flow 4 "Browse"): no secrets here.

`GET /v1/items` → `ItemList`, `GET /v1/items/{item}` → `ItemDetail`, each preview described by a
`PreviewDescriptor` whose `url` serves its bytes (`GET /v1/items/{item}/previews/{n}`, HTTP Range);
`GET /.well-known/coffer` → `WellKnownCoffer`; `GET /v1/health` → `Health`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from protocol.messages import Jwk, Sha256Hex
from protocol.money import Money
from protocol.pricing import ItemId, NumericDate

#: What the center decided a file is, by opening it with a decoder (never by its name).
MediaKind = Literal["image", "text", "pdf", "audio", "video", "other"]
#: How a preview is shown: an <img>, a text excerpt, an <audio>, a <video>, or a trial file to download.
PreviewKind = Literal["image", "text", "audio", "video", "file"]
Length = Annotated[StrictInt, Field(ge=0, le=2**50)]
ITEM_ID_PATTERN = r"^itm_[a-z2-7]{16}$"
CatalogItemId = Annotated[str, Field(pattern=ITEM_ID_PATTERN)]


class PreviewDescriptor(BaseModel):
    """One advertising preview (the patent's M'); `url` is relative to the center's origin."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: Annotated[StrictInt, Field(ge=0, le=15)]
    kind: PreviewKind
    media_type: Annotated[str, Field(min_length=3, max_length=100)]
    length: Length
    sha256: Sha256Hex
    url: str
    width: Annotated[StrictInt, Field(ge=1)] | None = None
    height: Annotated[StrictInt, Field(ge=1)] | None = None
    duration_ms: Annotated[StrictInt, Field(ge=0)] | None = None
    generated: bool = Field(description="True if made by the center; false for the seller's own trial file")


class BundleMember(BaseModel):
    """One file of a bundle (DESIGN.md "Bundles": one ustar archive, entries sorted by name)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=100)]
    length: Length
    sha256: Sha256Hex
    media_kind: MediaKind


class ItemSummary(BaseModel):
    """An item as listed in the catalog."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    item_id: ItemId
    title: Annotated[str, Field(min_length=1, max_length=200)]
    description: Annotated[str, Field(max_length=4000)] = ""
    price: Money
    media_kind: MediaKind
    bundle: bool
    content_length: Length
    content_sha256: Sha256Hex
    created_at: NumericDate
    previews: tuple[PreviewDescriptor, ...]


class ItemDetail(ItemSummary):
    """An item with the files it delivers (one file, or the members of a bundle)."""

    content_media_type: str
    files: tuple[BundleMember, ...]


class ItemList(BaseModel):
    """A page of the catalog, oldest first; pass `next_cursor` as `cursor` to get the next page."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    items: tuple[ItemSummary, ...]
    next_cursor: str | None = None


class WellKnownCoffer(BaseModel):
    """`/.well-known/coffer`: the root-signed key set and the root key that signed it.

    A first-use pin checks `root_fingerprint` == lowercase hex SHA-256 of `root_jwk`'s SubjectPublicKeyInfo
    DER,
    then verifies `keyset` (a `coffer-keyset` JWS) with that key.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    keyset: Annotated[str, Field(min_length=1, max_length=16384)]
    root_fingerprint: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    root_jwk: Jwk
    version: Annotated[StrictInt, Field(ge=1)]
    issuer: str


class Health(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Literal["ok"]
    database: Literal["ok"]
