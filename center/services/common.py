"""What every commerce service shares: sessions, keys, settings, the blob store, the clock, and the device
lookups and locks that serialize a device's money operations (center.db.tx)."""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Engine, bindparam, select
from sqlalchemy.orm import Session, sessionmaker

from center.blobs import BlobStore
from center.db import tx
from center.db.commerce import Device, table
from center.db.group import GroupCommit
from center.db.prepared import Prepared
from center.errors import DeviceRevokedError, DeviceSuspectError, NotFoundError, UnauthorizedError
from center.keys import CenterKeys
from center.sealing import token_hash
from center.settings import CenterSettings
from protocol import jws
from protocol.keys import public_key_from_jwk
from protocol.messages import SignedPayload


def wall_clock() -> int:
    return int(time.time())


TOKEN_HINTS = 4096
T = TypeVar("T")


class TokenHints:
    """device token hash → device_id, remembered in this process for the order and payment routes, so they
    need no read transaction of their own before their write transaction.

    A hint, never an authorization: another process may have replaced or cleared the token since (a
    re-enrollment, `center device reset`), so every service given a hint compares the token hash with the
    device row inside its own transaction (`check_token`) and answers 401 unauthorized (and forgets the hint)
    when they differ. Unknown tokens are never remembered."""

    def __init__(self, size: int = TOKEN_HINTS) -> None:
        self._size = size
        self._map: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> str | None:
        return self._map.get(digest)

    def remember(self, digest: str, device_id: str) -> None:
        with self._lock:
            if len(self._map) >= self._size:
                self._map.pop(next(iter(self._map)))
            self._map[digest] = device_id

    def forget(self, digest: str) -> None:
        with self._lock:
            self._map.pop(digest, None)


@dataclass(frozen=True)
class Commerce:
    """Built once per process (the app, or a CLI command)."""

    sessions: sessionmaker[Session]
    keys: CenterKeys
    settings: CenterSettings
    blobs: BlobStore
    clock: Callable[[], int] = field(default=wall_clock)
    tokens: TokenHints = field(default_factory=TokenHints)
    #: SQLite in a server: orders and payments share transactions and fsyncs (center.db.group); None: each
    #: operation commits alone (PostgreSQL groups its commits itself; the CLI writes one at a time)
    group: GroupCommit | None = None

    def now(self) -> int:
        return self.clock()

    @property
    def engine(self) -> Engine:
        engine: Engine = self.sessions.kw["bind"]
        return engine

    def write(self, work: Callable[[Session], T]) -> T:
        """`work(session)` as one atomic write operation, answered once it is durable: alone in a transaction
        (`tx.write`), or in a savepoint of a group commit. Either way it commits entirely or not at all."""
        if self.group is not None:
            return self.group.run(work)
        with tx.write(self.sessions) as session:
            return work(session)

    async def write_async(self, work: Callable[[Session], T]) -> T:
        """`write` from the event loop: queued to the group commit without a thread of its own waiting
        (center.db.group); without a group, `write` in a worker thread."""
        if self.group is not None:
            return await self.group.run_async(work)
        return await asyncio.to_thread(self.write, work)

    @property
    def issuer(self) -> str:
        return self.settings.issuer_url()

    @functools.cached_property
    def signer(self) -> jws.SoftwareSigner:
        """One signer (and so one public key object, whose kid `jws` remembers) for the process's keys
        (`CenterKeys` is frozen: the signing key never changes under it)."""
        return jws.SoftwareSigner(self.keys.signing)

    def sign(self, payload: SignedPayload) -> str:
        return jws.sign(payload, self.signer)


@functools.lru_cache(maxsize=4096)
def stored_public_key(jwk_json: str) -> ec.EllipticCurvePublicKey:
    """A device key as the center stored it (its JWK's JSON), parsed and checked once per process
    (`public_key_from_jwk`; key objects are immutable): the KEM key of every order and the payment key of
    every payment would otherwise be decoded and checked on the curve each time."""
    return public_key_from_jwk(json.loads(jwk_json))


def canonical(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


_DEVICES = table(Device)
#: The device row for a money operation, locked for its transaction (FOR UPDATE on PostgreSQL; on SQLite the
#: transaction already holds the database's write lock: BEGIN IMMEDIATE).
DEVICE_FOR_UPDATE = (
    select(
        _DEVICES.c.device_id,
        _DEVICES.c.state,
        _DEVICES.c.state_reason,
        _DEVICES.c.kem_jwk,
        _DEVICES.c.payment_jwk,
        _DEVICES.c.aead,
        _DEVICES.c.token_hash,
    )
    .where(_DEVICES.c.device_id == bindparam("p_device"))
    .with_for_update()
)
LOCK_DEVICE = Prepared(DEVICE_FOR_UPDATE)  # on SQLite's DBAPI cursor (center.db.prepared)


def check_token(commerce: Commerce, device: Any, digest: str | None) -> None:
    """Inside the transaction that locked `device`: the request's token (its hash, from `TokenHints`) must
    still be this device's; otherwise 401 and the hint is forgotten."""
    if digest is not None and device.token_hash != digest:
        commerce.tokens.forget(digest)
        raise UnauthorizedError("no valid device token")


def require_state(device: Any) -> None:
    """`require_active` for a device row read with `DEVICE_FOR_UPDATE`."""
    if device.state == "revoked":
        raise DeviceRevokedError(f"device {device.device_id} is revoked")
    if device.state == "suspect":
        raise DeviceSuspectError(f"device {device.device_id} is suspect: {device.state_reason}")


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
    require_state(device)


def device_for_token(session: Session, token: str) -> str:
    """The device_id whose bearer token this is (UnauthorizedError otherwise)."""
    device_id = session.scalar(select(Device.device_id).where(Device.token_hash == token_hash(token)))
    if device_id is None:
        raise UnauthorizedError("no valid device token")
    return device_id
