"""What every commerce service shares: sessions, keys, settings, the blob store, the clock, and the device
lookups and locks that serialize a device's money operations (center.db.tx)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from center.blobs import BlobStore
from center.db.commerce import Device
from center.errors import DeviceRevokedError, DeviceSuspectError, NotFoundError, UnauthorizedError
from center.keys import CenterKeys
from center.sealing import token_hash
from center.settings import CenterSettings
from protocol import jws
from protocol.messages import SignedPayload


def wall_clock() -> int:
    return int(time.time())


@dataclass(frozen=True)
class Commerce:
    """Built once per process (the app, or a CLI command)."""

    sessions: sessionmaker[Session]
    keys: CenterKeys
    settings: CenterSettings
    blobs: BlobStore
    clock: Callable[[], int] = field(default=wall_clock)

    def now(self) -> int:
        return self.clock()

    @property
    def issuer(self) -> str:
        return self.settings.issuer_url()

    def sign(self, payload: SignedPayload) -> str:
        return jws.sign(payload, jws.SoftwareSigner(self.keys.signing))


def canonical(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def lock_device(session: Session, device_id: str) -> Device | None:
    """The device row, locked for this transaction (a PostgreSQL row lock; SQLite holds the write lock)."""
    query = select(Device).where(Device.device_id == device_id).with_for_update()
    return session.scalars(query).one_or_none()


def require_device(session: Session, device_id: str, *, lock: bool = True) -> Device:
    device = lock_device(session, device_id) if lock else session.get(Device, device_id)
    if device is None:
        raise NotFoundError(f"no device {device_id}")
    return device


def require_active(device: Device) -> None:
    """Orders and credits stop for a revoked or suspect device (payments still settle)."""
    if device.state == "revoked":
        raise DeviceRevokedError(f"device {device.device_id} is revoked")
    if device.state == "suspect":
        raise DeviceSuspectError(f"device {device.device_id} is suspect: {device.state_reason}")


def device_for_token(session: Session, token: str) -> str:
    """The device_id whose bearer token this is (UnauthorizedError otherwise)."""
    device_id = session.scalar(select(Device.device_id).where(Device.token_hash == token_hash(token)))
    if device_id is None:
        raise UnauthorizedError("no valid device token")
    return device_id
