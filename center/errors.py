"""The center's errors, one tree (STYLE.md item 8). Each carries the problem slug it maps to.

    CenterError                     internal-error (500)
    ├── ConfigError                 bad settings: placeholder secret, plain HTTP off loopback, half a TLS pair
    ├── KeyStoreError               key files missing, unreadable or insecure (group/world readable)
    ├── InvalidInputError           validation-error (422): bad price, currency, title, file list
    ├── UnsupportedMediaError       unsupported-media (422): no preview can be made, no trial file given
    │   └── PreviewTooLargeError    no preview fits the size rule
    ├── NotFoundError               not-found (404)
    │   └── ItemNotFoundError
    ├── BadRequestError             bad-request (400): a malformed cursor
    ├── StorageError                internal-error (500): the blob store failed
    └── DatabaseUnavailableError    service-unavailable (503)

Library errors (SQLAlchemy, OSError, PyAV, Pillow) are translated where they happen with `raise ... from exc`;
`center.api.problems` turns these into problem+json, `center.cli` into one line on stderr.
"""

from __future__ import annotations

from typing import Any, ClassVar


class CenterError(Exception):
    """Base of every error the center raises on purpose."""

    slug: ClassVar[str] = "internal-error"

    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extensions = extensions


class ConfigError(CenterError):
    """The settings cannot be used (refused at start)."""


class KeyStoreError(CenterError):
    """A key file is missing, unreadable, malformed or readable by group/others."""


class InvalidInputError(CenterError):
    slug = "validation-error"


class UnsupportedMediaError(CenterError):
    slug = "unsupported-media"


class PreviewTooLargeError(UnsupportedMediaError):
    """Even the smallest re-encoding breaks the preview size rule."""


class NotFoundError(CenterError):
    slug = "not-found"


class ItemNotFoundError(NotFoundError):
    def __init__(self, item_id: str) -> None:
        super().__init__(f"no item {item_id!r}")
        self.item_id = item_id


class BadRequestError(CenterError):
    slug = "bad-request"


class StorageError(CenterError):
    """The blob store failed to read or write."""


class DatabaseUnavailableError(CenterError):
    slug = "service-unavailable"
