"""The purchase journal: what this PC promised the center, written before it is sent (DESIGN.md flow 5.1).

One JSON file per unfinished purchase, `<state dir>/purchases/<device_id>/<item_id>.json`, written atomically
(temp file, fsync, rename, directory fsync) at each step:

    begun    {item_id, key, center, mode, repurchase}  before POST /v1/orders: a re-run reuses the key,
                                                        so the center answers the same order (one hold)
    ordered  + order (the JWS), order_id, content_url, content_length
    paid     + payment (from the device)                the device committed: one debit, whatever follows

and removed once the device holds the receipt. `purchase ITEM` again, or `sync`, continues from the step
recorded; nothing in it is secret (the order is addressed to the device's TPM key; the payment is sealed to
the center).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from terminal_cli.errors import UsageError

Mode = Literal["now", "deferred"]


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    item_id: str
    device_id: str
    center: str
    key: str
    mode: Mode
    repurchase: bool
    created: int
    order_id: str | None = None
    order: str | None = None
    content_url: str | None = None
    content_length: int | None = None
    payment: str | None = None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / "purchases"

    def _path(self, device_id: str, item_id: str) -> Path:
        return self.root / device_id / f"{item_id}.json"

    def _write(self, entry: Entry) -> Entry:
        path = self._path(entry.device_id, entry.item_id)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(entry.model_dump_json())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_dir(path.parent)
        return entry

    def get(self, device_id: str, item_id: str) -> Entry | None:
        path = self._path(device_id, item_id)
        try:
            return Entry.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValidationError, json.JSONDecodeError) as exc:
            raise UsageError(f"purchase journal {path} is unreadable: {exc}") from exc

    def pending(self, device_id: str) -> Iterator[Entry]:
        directory = self.root / device_id
        for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
            entry = self.get(device_id, path.stem)
            if entry is not None:
                yield entry

    def begin(self, *, device_id: str, item_id: str, center: str, mode: Mode, repurchase: bool) -> Entry:
        """Record a fresh idempotency key (durably) before the order is requested."""
        key = "pk_" + secrets.token_urlsafe(24)
        entry = Entry(
            item_id=item_id,
            device_id=device_id,
            center=center,
            key=key,
            mode=mode,
            repurchase=repurchase,
            created=int(time.time()),
        )
        return self._write(entry)

    def update(self, entry: Entry, **changes: object) -> Entry:
        return self._write(entry.model_copy(update=changes))

    def finish(self, entry: Entry) -> None:
        path = self._path(entry.device_id, entry.item_id)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            _fsync_dir(path.parent)
