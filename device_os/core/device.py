"""The device: provision, setup, unlock, lock, PIN change, auto-lock (DESIGN.md flows 1-2, "Keys").

`Device` is what the HTTP layer holds: one per process, on one TPM adapter. Unlocked material (the DEK, the
PIN's RAM check value, the loaded hot keys) lives in RAM only and is dropped at `lock()`.

Status at start (after header recovery of `state` and of `setup.next/`, `pin.next/`):
    no sealed DEK and no state            -> not set up
    sealed DEK and `state` at the counter -> set up (locked)
    anything else                         -> tamper (never a silent reset); spending is refused
At the first unlock the body is decrypted (failure = tamper) and content blobs not in the library are deleted.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from device_os.core import fsio, statedoc
from device_os.core.aead import AeadName, resolve
from device_os.core.body import StateBody
from device_os.core.content import ContentStore
from device_os.core.faults import FaultHook, installed
from device_os.core.kernel import Session
from device_os.core.keys import KeyDirectory, KeyFiles
from device_os.core.store import Recovery, StateStore
from device_os.core.wallet import Wallet
from device_os.errors import (
    AlreadySetUp,
    Locked,
    NotProvisioned,
    NotSetUp,
    PinLockout,
    Tampered,
    WeakPin,
    WrongPin,
)
from device_os.settings import DeviceSettings
from device_os.tpm import KemKey, KeyBlob, Lockout, PaymentKey, ProvisionedKeys, Tpm, TpmError, TpmWrongPin
from protocol.b64 import b64url_encode
from protocol.keys import device_id_for, jwk_from_public_key, public_key_to_pem

log = logging.getLogger("device_os.core")

PROVISIONED = "provisioned.json"
CONTENT = "content"
MIN_PIN_DIGITS = 6
MAX_PIN_DIGITS = 32
RAM_PIN_STRIKES = 3
CERTIFY_NONCE = b"coffer/identity/v1"


class Phase(StrEnum):
    NOT_PROVISIONED = "not-provisioned"
    NOT_SET_UP = "not-set-up"
    LOCKED = "locked"
    UNLOCKED = "unlocked"
    TAMPERED = "tampered"


class DeviceStatus(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    phase: Phase
    device_id: str | None
    counter: int | None  # the TPM counter
    tampered: bool
    tamper_reason: str | None = None


def check_pin(pin: str) -> bytes:
    """PINs are 6 to 64 ASCII digits (DESIGN.md flow 2); returns the TPM authValue bytes."""
    if not (MIN_PIN_DIGITS <= len(pin) <= MAX_PIN_DIGITS) or not pin.isascii() or not pin.isdigit():
        raise WeakPin(f"the PIN must be {MIN_PIN_DIGITS} to {MAX_PIN_DIGITS} digits")
    return pin.encode("ascii")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Device:
    """One device core over one TPM adapter. Thread-safe: state changes serialize on the store's lock."""

    def __init__(
        self,
        settings: DeviceSettings,
        tpm: Tpm,
        *,
        clock: Callable[[], float] = time.monotonic,
        faults: FaultHook | None = None,
    ) -> None:
        self.settings = settings
        self.tpm = tpm
        self.faults = faults if faults is not None else installed()  # TEST-ONLY seam (core/faults.py)
        self._clock = clock
        data = settings.data_dir
        self.data_dir = data
        self.keydir = KeyDirectory(data, self.faults)
        self.content = ContentStore(data / CONTENT, self.faults)
        self.store = StateStore(data, tpm_counter(tpm), self.faults)
        self.commit_lock = self.store.commit_lock
        self._provisioned: ProvisionedKeys | None = None
        self._device_id: str | None = None
        self._recovery: Recovery | None = None
        self._tamper: str | None = None
        self._wallet: Wallet | None = None
        self._session: Session | None = None
        self._pin_check: tuple[bytes, bytes] | None = None  # (random key, HMAC(key, PIN)) while unlocked
        self._strikes = 0
        self._last_activity = clock()
        self._first_unlock_done = False
        self._blobs: KeyFiles | None = None
        self._idle_lock = threading.Lock()
        self._busy = 0  # requests in progress (`busy()`): no auto-lock while any runs

    # -- lifecycle ----------------------------------------------------------------------------------------
    @classmethod
    def open(cls, settings: DeviceSettings, *, faults: FaultHook | None = None) -> Device:
        """Open the TPM, run start-up recovery, classify the device. `faults`: tests only."""
        tpm = Tpm.open(settings.tcti)
        try:
            device = cls(settings, tpm, faults=faults)
            device.start()
        except BaseException:
            tpm.close()
            raise
        return device

    def close(self) -> None:
        """Lock, then close the TPM (orderly Shutdown(STATE), even if the lock failed)."""
        try:
            self.lock()
        finally:
            self.tpm.close()

    def _load_provisioned(self) -> ProvisionedKeys | None:
        path = self.data_dir / PROVISIONED
        if not path.is_file():
            return None
        return ProvisionedKeys.from_bytes(path.read_bytes())

    def provision(self) -> ProvisionedKeys:
        """Flow 1 (first boot, idempotent): TPM keys, NV counter, DA parameters; `provisioned.json`."""
        with self.commit_lock:
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            existing = self._load_provisioned()
            keys = self.tpm.provision(existing)
            if existing is None or keys.to_bytes() != existing.to_bytes():
                fsio.write_durable(self.data_dir / PROVISIONED, keys.to_bytes())
            self.start()
            return keys

    def start(self) -> DeviceStatus:
        """Start-up: header recovery of `state`, then of `setup.next/` and `pin.next/`; classify."""
        with self.commit_lock:
            with contextlib.suppress(TpmError):
                self.lock()
            self._drop_session()
            self._tamper = None
            self._first_unlock_done = False  # the next unlock collects blobs an interrupted commit left
            self._provisioned = self._load_provisioned()
            if self._provisioned is None:
                return self.status()
            self._device_id = device_id_for(self.tpm.public_key(self._provisioned.ak))
            self._recovery = self.store.recover()
            actions = self.keydir.recover(state_committed=self._recovery.consistent)
            for action in actions:
                log.info("start-up recovery: %s", action)
            if self._recovery.rolled_forward:
                log.info("start-up recovery: state.next rolled forward")
            if self._recovery.discarded_next:
                log.info("start-up recovery: state.next discarded")
            has_keys = self.keydir.present()
            if not has_keys and not self._recovery.state_present:
                pass  # not set up
            elif not has_keys:
                self._tamper = "a state exists without a sealed DEK"
            elif not self._recovery.state_present:
                self._tamper = "the sealed DEK exists but the state is missing"
            elif not self._recovery.consistent:
                self._tamper = (
                    f"the state's counter ({self._recovery.state_counter}) is not the TPM's "
                    f"({self._recovery.tpm_counter})"
                )
            if self._tamper:
                log.warning("tamper: %s", self._tamper)
            return self.status()

    # -- status -------------------------------------------------------------------------------------------
    @property
    def device_id(self) -> str:
        if self._device_id is None:
            raise NotProvisioned("the device is not provisioned")
        return self._device_id

    def _tamper_reason(self) -> str | None:
        """Tamper seen at start or unlock, or by the store under a commit (the counter moved)."""
        return self._tamper or self.store.tamper

    def phase(self) -> Phase:
        if self._provisioned is None:
            return Phase.NOT_PROVISIONED
        if self._tamper_reason() is not None:
            return Phase.TAMPERED
        if not self.keydir.present():
            return Phase.NOT_SET_UP
        return Phase.UNLOCKED if self._wallet is not None else Phase.LOCKED

    def status(self) -> DeviceStatus:
        phase = self.phase()
        return DeviceStatus(
            phase=phase,
            device_id=self._device_id,
            counter=self._recovery.tpm_counter if self._recovery is not None else None,
            tampered=self._tamper_reason() is not None,
            tamper_reason=self._tamper_reason(),
        )

    @property
    def tampered(self) -> bool:
        return self._tamper_reason() is not None

    @property
    def needs_recovery(self) -> bool:
        """A commit was interrupted (the TPM failed under it): `start()` must re-run header recovery."""
        return self.store.interrupted

    def identity(self) -> dict[str, Any]:
        """The public identity (`GET /v1/identity`): EK certificate, keys, certify evidence, AEAD."""
        if not self.keydir.present():
            raise NotSetUp("the device is not set up")
        identity: dict[str, Any] = json.loads(self.keydir.load().identity)
        return identity

    def activate_credential(self, credential_blob: bytes, encrypted_secret: bytes) -> bytes:
        """Flow 3: TPM2_ActivateCredential with the attestation key and the EK (no PIN; set up or not)."""
        with self.commit_lock:
            if self._provisioned is None:
                raise NotProvisioned("the device is not provisioned")
            return self.tpm.activate_credential(self._provisioned.ak, credential_blob, encrypted_secret)

    def ek_public(self) -> bytes:
        """The EK's marshalled TPM2B_PUBLIC (the center's MakeCredential input)."""
        return self.tpm.ek_public()

    def aead(self) -> AeadName:
        value = self.identity()["aead"]
        if value not in ("aes-256-gcm", "chacha20-poly1305"):
            raise Tampered("identity.json names an unknown AEAD")
        return value  # type: ignore[no-any-return]

    # -- setup --------------------------------------------------------------------------------------------
    def setup(self, pin: str) -> DeviceStatus:
        """Flow 2: PIN-bound KEM and payment keys, the DEK sealed under the PIN, certify evidence, the empty
        state."""
        auth = check_pin(pin)
        with self.commit_lock:
            phase = self.phase()
            if phase is Phase.NOT_PROVISIONED:
                raise NotProvisioned("the device is not provisioned")
            if phase is Phase.TAMPERED:
                raise Tampered(self._tamper_reason() or "tampered")
            if phase is not Phase.NOT_SET_UP:
                raise AlreadySetUp("the device is already set up")
            assert self._provisioned is not None
            prov = self._provisioned
            aead = resolve(self.settings.aead)
            kem = self.tpm.create_kem_key(auth)
            payment = self.tpm.create_payment_key(auth)
            dek = os.urandom(32)
            sealed = self.tpm.seal(dek, auth)
            kem_evidence = self.tpm.certify(prov.ak, kem, CERTIFY_NONCE, pin=auth)
            payment_evidence = self.tpm.certify(prov.ak, payment, CERTIFY_NONCE, pin=auth)
            identity = {
                "v": 1,
                "device_id": self.device_id,
                "aead": aead,
                "ek_certificate": _b64(self.tpm.ek_certificate()),
                "ek_public": b64url_encode(self.tpm.ek_public()),
                "attestation_key": public_key_to_pem(self.tpm.public_key(prov.ak)),
                "kem_jwk": jwk_from_public_key(self.tpm.public_key(kem)),
                "payment_jwk": jwk_from_public_key(self.tpm.public_key(payment)),
                "certify_nonce": b64url_encode(CERTIFY_NONCE),
                "certify": {"kem": kem_evidence.to_json(), "payment": payment_evidence.to_json()},
            }
            files = KeyFiles(
                sealed_dek=sealed.to_bytes(),
                payment_key=payment.to_bytes(),
                identity=json.dumps(identity, indent=1, sort_keys=True).encode("ascii"),
                kem_key=kem.to_bytes(),
            )
            self.keydir.write_setup_next(files)
            body = StateBody(device_id=self.device_id)
            self.store.commit(
                lambda counter: statedoc.build(
                    counter, body.encode(), dek=dek, device_id=self.device_id, aead=aead
                ),
                first=True,
            )
            self.faults("setup-after-commit")
            self.keydir.finish_setup()
            self._recovery = Recovery(self.store.counter, self.store.counter, True, False, False)
            log.info("setup complete")
            return self.status()

    # -- unlock / lock ------------------------------------------------------------------------------------
    def _pin_matches(self, pin: str) -> bool:
        if self._pin_check is None:
            return False
        key, expected = self._pin_check
        return hmac.compare_digest(hmac.new(key, pin.encode("utf-8"), hashlib.sha256).digest(), expected)

    def _remember_pin(self, pin: str) -> None:
        key = os.urandom(32)
        self._pin_check = (key, hmac.new(key, pin.encode("utf-8"), hashlib.sha256).digest())
        self._strikes = 0

    def _tries_left(self) -> int | None:
        try:
            da = self.tpm.da_status()
        except TpmError:
            return None
        return max(0, da.max_tries - da.failed_tries)

    def _ram_strike(self) -> WrongPin:
        """A wrong PIN checked against RAM while unlocked (the one count of them): `tries_left` counts down
        to the lock (2, 1, 0); the third in a row locks. The TPM's tries are untouched."""
        self._strikes += 1
        left = max(0, RAM_PIN_STRIKES - self._strikes)
        if left == 0:
            log.warning("three wrong PINs in a row while unlocked: locking")
            self.lock()
        return WrongPin(left)

    def unlock(self, pin: str) -> None:
        """Unseal the DEK with the PIN, load the hot keys, decrypt the state (first time: check + collect).

        Already unlocked: the PIN is checked against RAM (never the TPM); three wrong in a row lock.
        """
        with self.commit_lock:
            phase = self.phase()
            if phase is Phase.UNLOCKED:
                self._check_idle()
            if self._wallet is not None:
                if not self._pin_matches(pin):
                    raise self._ram_strike()
                self._strikes = 0
                self.touch()
                return
            if phase is Phase.NOT_PROVISIONED:
                raise NotProvisioned("the device is not provisioned")
            if phase is Phase.NOT_SET_UP:
                raise NotSetUp("the device is not set up")
            if phase is Phase.TAMPERED:  # before any key file is read or TPM try spent
                raise Tampered(self._tamper_reason() or "tampered")
            try:
                auth = check_pin(pin)
            except WeakPin:
                raise WrongPin(self._tries_left()) from None
            assert self._provisioned is not None
            files = self.keydir.load()
            try:
                dek = self.tpm.unseal(KeyBlob.from_bytes(files.sealed_dek), auth)
                kem, payer = self.tpm.load_hot_keys(
                    KeyBlob.from_bytes(files.kem_key), KeyBlob.from_bytes(files.payment_key), auth
                )
            except TpmWrongPin as exc:
                raise WrongPin(exc.tries_left) from exc
            except Lockout as exc:
                raise PinLockout(exc.retry_after) from exc
            try:
                self._open_session(pin, dek, kem, payer)
            except BaseException:
                # Whatever failed after the keys loaded (tamper, a bad identity.json, the disk): nothing of
                # this unlock stays resident (the adapter forgets the hot keys and their PIN).
                with contextlib.suppress(TpmError):
                    self.tpm.unload_hot_keys()
                raise

    def _open_session(self, pin: str, dek: bytes, kem: KemKey, payer: PaymentKey) -> None:
        """The rest of an unlock once the DEK is unsealed and the hot keys loaded: decrypt and check the
        state, collect orphans at the first unlock, hold the session."""
        with self.commit_lock:
            if self._tamper is not None:
                raise Tampered(self._tamper)
            aead = self.aead()
            try:
                document = statedoc.parse(self.store.read(), dek=dek, device_id=self.device_id, aead=aead)
                body = StateBody.decode(document.plaintext)
                if body.device_id != self.device_id:
                    raise ValueError("state of another device")
            except (statedoc.BadStateDocumentError, ValueError) as exc:
                self._tamper = "the state body failed its check"
                log.warning("tamper: %s", self._tamper)
                raise Tampered(self._tamper) from exc
            tpm_counter = self.tpm.counter_read()  # the counter may have moved since start-up
            if document.counter != tpm_counter:  # the caller unloads the hot keys
                self._tamper = f"the state's counter ({document.counter}) is not the TPM's ({tpm_counter})"
                log.warning("tamper: %s", self._tamper)
                raise Tampered(self._tamper)
            session = Session(
                device_id=self.device_id,
                aead=aead,
                dek=dek,
                payer=payer,
                kem=kem,
                store=self.store,
                content=self.content,
            )
            if not self._first_unlock_done:
                removed = self.content.collect({entry.blob for entry in body.library.values()})
                if removed:
                    log.info("first unlock: removed %d orphaned content file(s)", len(removed))
                self._first_unlock_done = True
            self._session = session
            self._wallet = Wallet(
                session,
                body,
                pinned_root=self.settings.pinned_root_fingerprint,
                trust_first_center=self.settings.trust_first_center,
            )
            self._remember_pin(pin)
            self.touch()
            log.info("unlocked")

    def _drop_session(self) -> None:
        if self._wallet is not None:
            self._wallet.close()
        if self._session is not None:
            self._session.dek = b""  # drop the reference (Python cannot wipe immutable bytes)
        self._wallet = None
        self._session = None
        self._pin_check = None
        self._strikes = 0

    def lock(self) -> None:
        """Drop the DEK and the wallet from RAM and unload the hot keys."""
        with self.commit_lock:
            was_unlocked = self._wallet is not None
            self._drop_session()
            if was_unlocked:
                self.tpm.unload_hot_keys()
                log.info("locked")

    # -- PIN change ---------------------------------------------------------------------------------------
    def change_pin(self, old_pin: str, new_pin: str) -> None:
        """Check the old PIN against RAM; reseal the DEK, re-auth the KEM and payment keys into `pin.next/`;
        swap."""
        with self.commit_lock:
            session = self._require_session()
            if not self._pin_matches(old_pin):
                raise self._ram_strike()
            self._strikes = 0
            new_auth = check_pin(new_pin)
            old_auth = old_pin.encode("ascii")
            assert self._provisioned is not None
            files = self.keydir.load()
            try:
                sealed = self.tpm.seal(session.dek, new_auth)
                kem_key = self.tpm.change_auth(KeyBlob.from_bytes(files.kem_key), old_auth, new_auth)
                payment = self.tpm.change_auth(KeyBlob.from_bytes(files.payment_key), old_auth, new_auth)
            except TpmWrongPin as exc:
                raise WrongPin(exc.tries_left) from exc
            except Lockout as exc:
                raise PinLockout(exc.retry_after) from exc
            self.keydir.write_pin_next(
                KeyFiles(
                    sealed_dek=sealed.to_bytes(),
                    payment_key=payment.to_bytes(),
                    identity=files.identity,
                    kem_key=kem_key.to_bytes(),
                )
            )
            self.keydir.swap_pin_next()
            self.tpm.unload_hot_keys()
            kem, payer = self.tpm.load_hot_keys(kem_key, payment, new_auth)
            session.kem = kem
            session.payer = payer
            self._remember_pin(new_pin)
            self.touch()
            log.info("PIN changed")

    # -- the wallet and auto-lock ---------------------------------------------------------------------------
    def touch(self) -> None:
        """An authenticated request: reset the idle timer."""
        self._last_activity = self._clock()

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """A request in progress (the HTTP layer wraps every authenticated request, body and response
        streaming included): the device does not auto-lock while one runs, however long an upload takes;
        the idle timer starts again when it ends. An explicit `lock()` still locks at once."""
        with self._idle_lock:
            self._busy += 1
        try:
            yield
        finally:
            with self._idle_lock:
                self._busy -= 1
                self.touch()

    def _check_idle(self) -> bool:
        timeout = self.settings.auto_lock_seconds
        if self._busy:
            return False
        if self._wallet is not None and timeout and self._clock() - self._last_activity >= timeout:
            log.info("idle for %d s: auto-lock", timeout)
            self.lock()
            return True
        return False

    def check_idle(self) -> bool:
        """Lock if idle past the timeout (the HTTP layer calls this periodically); True if it locked."""
        with self.commit_lock:
            return self._check_idle()

    def _require_session(self) -> Session:
        reason = self._tamper_reason()
        if reason is not None:
            raise Tampered(reason)
        self._check_idle()
        if self._session is None:
            if self.phase() is Phase.NOT_SET_UP:
                raise NotSetUp("the device is not set up")
            raise Locked("the device is locked")
        return self._session

    def wallet(self) -> Wallet:
        """The unlocked device's wallet (resets the idle timer); Locked / Tampered / NotSetUp otherwise."""
        with self.commit_lock:
            self._require_session()
            assert self._wallet is not None
            self.touch()
            return self._wallet


def tpm_counter(tpm: Tpm) -> _TpmCounter:
    return _TpmCounter(tpm)


class _TpmCounter:
    """The wallet counter: the TPM NV counter (never ORDERLY)."""

    def __init__(self, tpm: Tpm) -> None:
        self._tpm = tpm

    def read(self) -> int:
        return self._tpm.counter_read()

    def increment(self) -> int:
        return self._tpm.counter_increment()
