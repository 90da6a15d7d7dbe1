"""The purchase journal: what this PC promised the center, written before it is sent (DESIGN.md flow 5.1).

One file per unfinished purchase, `<state dir>/purchases/<device_id>/<item_id>.json`, one JSON object a line:

    begun    {item_id, key, center, mode, repurchase}  before POST /v1/orders: a re-run reuses the key,
                                                        so the center answers the same order (one hold)
    ordered  + {order (the JWS), order_id, content_url, content_length}
    paid     + {payment (from the device)}              the device committed: one debit, whatever follows

and removed once the device holds the receipt. `purchase ITEM` again, or `sync`, continues from the step
recorded; nothing in it is secret (the order is addressed to the device's TPM key; the payment is sealed to
the center).

Only the first line must be durable, and it is, before the center hears of the order: the file is made whole
(temp file, fsync, rename, directory fsync) with the key in it. Every later step is appended without an
fsync, and the removal is not fsynced either: each of them only saves a round trip after a crash, because what
it records can be found again elsewhere — the order from the center (the same key answers the same order),
the payment in the device's outbox (or the device's stored answer to the same order), the settlement from the
center (`GET /v1/orders/{id}` names its receipt). A power cut may therefore leave the journal at an earlier
step than the one reached, or with a torn last line (an append cut short; some filesystems leave zeros at the
end of a file after a crash): `get()` keeps every whole line up to the first unreadable one, and the purchase
continues from there (terminal_cli/purchase.py; tests/terminal/test_journal_lost.py). An append never
rewrites the first line, so no filesystem's rename or delayed-allocation semantics can cost the key.
docs/terminal.md "Purchase journal" has the reasoning and the measurements.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from terminal_cli.config import write_private
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


class Journal:
    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / "purchases"

    def _path(self, device_id: str, item_id: str) -> Path:
        return self.root / device_id / f"{item_id}.json"

    def get(self, device_id: str, item_id: str) -> Entry | None:
        path = self._path(device_id, item_id)
        try:
            first, *later = path.read_bytes().split(b"\n")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise UsageError(f"purchase journal {path} is unreadable: {exc}") from exc
        try:
            entry = Entry.model_validate_json(first)
        except (ValidationError, json.JSONDecodeError) as exc:
            raise UsageError(f"purchase journal {path} is unreadable: {exc}") from exc
        for line in later:  # the steps after the key: whole lines up to the first torn or unreadable one
            try:
                changes = json.loads(line)
                if not isinstance(changes, dict):
                    break
                entry = Entry.model_validate({**entry.model_dump(), **changes})
            except (ValueError, ValidationError):
                break
        return entry

    def pending(self, device_id: str) -> Iterator[Entry]:
        directory = self.root / device_id
        for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
            entry = self.get(device_id, path.stem)
            if entry is not None:
                yield entry

    def begin(self, *, device_id: str, item_id: str, center: str, mode: Mode, repurchase: bool) -> Entry:
        """Record a fresh idempotency key, durably (file and directory fsynced), before the order is asked
        for."""
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
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(self._path(device_id, item_id), entry.model_dump_json() + "\n", durable=True)
        return entry

    def update(self, entry: Entry, **changes: object) -> Entry:
        """Append one step (not fsynced: see the module docstring); returns the entry with it."""
        updated = entry.model_copy(update=changes)
        Entry.model_validate(updated.model_dump())
        line = json.dumps(updated.model_dump(mode="json", include=set(changes)), separators=(",", ":"))
        fd = os.open(self._path(entry.device_id, entry.item_id), os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, line.encode("utf-8") + b"\n")
        finally:
            os.close(fd)
        return updated

    def finish(self, entry: Entry) -> None:
        """Remove the entry (not fsynced: an entry that comes back after a crash is finished again)."""
        with contextlib.suppress(FileNotFoundError):
            self._path(entry.device_id, entry.item_id).unlink()
