"""The wallet's commit kernel (DESIGN.md "Device state and crash safety", "Time floor"): what an unlocked
device holds (`Session`), one commit of a new state body under the commit lock, verification of center-signed
messages against the enrolled key set with the time floor raised first, and the pruning of expired entries.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol, TypeVar

from cryptography.hazmat.primitives.asymmetric import ec

from device_os.core import statedoc
from device_os.core.aead import AeadName
from device_os.core.body import SettledEntry, StateBody
from device_os.core.content import ContentStore
from device_os.core.store import StateStore
from device_os.errors import (
    DeviceError,
    InvalidMessage,
    Locked,
    MessageExpired,
    NotEnrolled,
    Unavailable,
    WrongDevice,
)
from device_os.tpm import KeyNotLoaded, TpmError
from protocol import hpke, jws, pricing
from protocol.b64 import b64url_decode
from protocol.errors import EncodingError, HpkeError, JwsError, JwsExpired, JwsWrongAudience
from protocol.hpke import RecipientKey
from protocol.jws import Signer
from protocol.keys import public_key_from_jwk
from protocol.messages import (
    Keyset,
    SignedPayload,
)

P = TypeVar("P", bound=SignedPayload)
CONTENT_KEY_SIZE = 32  # Ke (DESIGN.md "Keys"): content stream v1 takes exactly a 256-bit key


class Cuttable(Protocol):
    """Something that holds the DEK or a key derived from it between two steps the PC paces (an open content
    stream, an upload being staged): `cut()` makes it let go at once and fail its next step with Locked."""

    def cut(self) -> None: ...


@dataclass
class Session:
    """What an unlocked device holds in RAM (and nothing of it on disk in clear)."""

    device_id: str
    aead: AeadName
    dek: bytes
    payer: Signer
    kem: RecipientKey
    store: StateStore
    content: ContentStore


class WalletKernel:
    """State and shared steps of the wallet; `Wallet` (wallet.py) is what the service calls."""

    def __init__(
        self,
        session: Session,
        body: StateBody,
        *,
        pinned_root: str | None = None,
        trust_first_center: bool = False,
    ) -> None:
        self._session = session
        self._body = body
        self._pinned_root = pinned_root
        self._trust_first_center = trust_first_center
        self.commit_lock: threading.RLock = session.store.commit_lock
        self._signing_key: ec.EllipticCurvePublicKey | None = None
        self._payment_key: ec.EllipticCurvePublicKey | None = None
        self._closed = False
        self._holders: weakref.WeakSet[Cuttable] = weakref.WeakSet()
        self._holders_lock = threading.Lock()

    @property
    def body(self) -> StateBody:
        return self._body

    def _commit(
        self, build_body: Callable[[int], StateBody], before_increment: Callable[[], object] | None = None
    ) -> int:
        """One commit: `build_body(new_counter)` (under the lock) returns the new body or raises;
        `before_increment` as in `StateStore.commit`."""
        new_body: list[StateBody] = []

        def build(counter: int) -> bytes:
            body = build_body(counter)
            new_body.append(body)
            return statedoc.build(
                counter,
                body.encode(),
                dek=self._session.dek,
                device_id=self._session.device_id,
                aead=self._session.aead,
            )

        def guarded(counter: int) -> bytes:
            if self._closed:
                raise Locked("the device was locked")
            with tpm_calls():
                return build(counter)

        counter = self._session.store.commit(guarded, before_increment=before_increment)
        self._body = new_body[0]
        return counter

    def close(self) -> None:
        """Called by `Device.lock()`: no operation of this wallet commits any more, and whatever holds the DEK
        between two steps the PC paces is cut now (issue 12 #9: a client that stops reading a content stream,
        or stops sending an upload, must not keep the DEK reachable after the lock)."""
        with self.commit_lock:
            with self._holders_lock:
                self._closed = True
                holders = list(self._holders)
                self._holders.clear()
            for holder in holders:
                holder.cut()

    def cut_at_lock(self, holder: Cuttable) -> None:
        """Call `holder.cut()` when the device locks (at once if it already has). Held weakly: a holder
        dropped by its caller needs no unregistering."""
        with self._holders_lock:
            if not self._closed:
                self._holders.add(holder)
                return
        holder.cut()

    def _check_open(self) -> None:
        if self._closed:
            raise Locked("the device is locked")

    def _dek(self) -> bytes:
        """The DEK, or Locked once the device locked (lock closes the wallet, then drops the DEK)."""
        dek = self._session.dek
        if self._closed or not dek:
            raise Locked("the device is locked")
        return dek

    def _unwrap_content_key(
        self, wrapped_key: str, order_id: str, *, refuse: type[DeviceError], source: str
    ) -> bytes:
        """Ke from its HPKE wrapping to this device's KEM key (DESIGN.md "Wire formats": info =
        `coffer/content-key/v1` || 0x00 || order_id; one TPM2_ECDH_ZGen). Any way it fails to give a 32-byte
        key raises `refuse` naming `source` (a purchase: the order's, InvalidMessage; a deferred item's first
        open: the stored one, CorruptContent); a lock meanwhile raises Locked, a TPM failure Unavailable."""
        self._check_open()
        try:
            with tpm_calls():
                ke = hpke.open(
                    self._session.kem, b64url_decode(wrapped_key), info=hpke.content_key_info(order_id)
                )
        except (HpkeError, EncodingError) as exc:
            raise refuse(f"{source} wrapped key does not open with this device's KEM key") from exc
        if len(ke) != CONTENT_KEY_SIZE:
            raise refuse(f"{source} wrapped key is not a {CONTENT_KEY_SIZE}-byte content key")
        return ke

    @property
    def closed(self) -> bool:
        """The device locked since this wallet was handed out: nothing of it commits or decrypts any more."""
        return self._closed

    def _center_keys(self) -> tuple[ec.EllipticCurvePublicKey, ec.EllipticCurvePublicKey]:
        record = self._body.enrollment
        if record is None:
            raise NotEnrolled("the device is not enrolled with a center")
        if self._signing_key is None or self._payment_key is None:
            keyset = jws.verify(record.keyset, Keyset, keys=public_key_from_jwk(record.root_jwk), now=0)
            self._signing_key = keyset.signing_jwk.public_key()
            self._payment_key = keyset.payment_jwk.public_key()
        return self._signing_key, self._payment_key

    def _verify_center_message(
        self, token: str, kind: type[P], key: ec.EllipticCurvePublicKey
    ) -> tuple[P, int]:
        """Verify a center message; returns it and the floor raised to its iat (exp judged against that)."""
        floor = self._body.time_floor
        try:
            payload = jws.verify(token, kind, keys=key, now=floor, audience=self._session.device_id)
        except JwsExpired as exc:
            raise MessageExpired(f"{kind.TYP} expired") from exc
        except JwsWrongAudience as exc:
            raise WrongDevice(f"{kind.TYP} is addressed to another device") from exc
        except JwsError as exc:
            raise InvalidMessage(f"{kind.TYP}: {exc}") from exc
        floor = max(floor, payload.iat)
        expiry = payload.expiry()
        if expiry is not None and not floor < expiry:
            raise MessageExpired(f"{kind.TYP} expired")
        return payload, floor

    @staticmethod
    def _live(purses: pricing.Purses, floor: int) -> pricing.Purses:
        """Coupons and tickets still valid at the time floor (expired ones are dropped at the next commit)."""
        return pricing.Purses(
            prepaid=purses.prepaid,
            coupons=tuple(c for c in purses.coupons if c.exp > floor),
            tickets=tuple(t for t in purses.tickets if t.exp > floor),
        )

    @staticmethod
    def _spent(spent: dict[str, int], floor: int) -> dict[str, int]:
        """Spent credit ids still needed: a credit whose exp is not after the floor can never verify again."""
        return {cid: exp for cid, exp in spent.items() if exp > floor}

    @staticmethod
    def _settled(settled: dict[str, SettledEntry], floor: int) -> dict[str, SettledEntry]:
        """Settled orders still needed to answer `order-settled`: an order whose exp is not after the floor
        can never verify again (it is refused as expired), so its entry goes, as spent credit ids do."""
        return {oid: entry for oid, entry in settled.items() if entry.order_exp > floor}


@contextmanager
def tpm_calls() -> Iterator[None]:
    """TPM failures inside wallet operations: a key unloaded by a concurrent lock, or the TPM unreachable."""
    try:
        yield
    except KeyNotLoaded as exc:
        raise Locked("the device was locked") from exc
    except TpmError as exc:
        raise Unavailable(f"TPM failure: {type(exc).__name__}") from exc


def unverified_member(token: str, member: str) -> str:
    """A string member of a JWS payload, unverified: for routing only (which key set, which stored answer)."""
    try:
        return jws.unverified_member(token, member)
    except JwsError as exc:
        raise InvalidMessage(f"not a compact JWS with a {member}") from exc
