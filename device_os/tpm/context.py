"""The worker-side state of `Tpm` and what every part of it shares: the ESAPI connection (open, reconnect
after a broken link, orderly close), leftover handles, the salted session, loading and flushing objects, the
slot plan for hot keys, and the DA status a PIN failure is reported with. Runs only on the worker thread.
"""

from __future__ import annotations

import contextlib
import logging
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric import ec
from tpm2_pytss import ESAPI, TSS2_Exception
from tpm2_pytss.constants import (
    ESYS_TR,
    TPM2_ALG,
    TPM2_CAP,
    TPM2_PT,
    TPM2_SE,
    TPM2_ST,
    TPM2_SU,
    TPMA_SESSION,
)
from tpm2_pytss.types import (
    TPM2B_PRIVATE,
    TPM2B_PUBLIC,
    TPM2B_SENSITIVE_CREATE,
    TPMS_SENSITIVE_CREATE,
    TPMT_SYM_DEF,
)

from device_os.tpm.errors import (
    BadBlob,
    Lockout,
    TpmError,
    TpmNotProvisioned,
    TpmUnavailable,
    TpmWrongPin,
    is_auth_failure,
    is_lockout,
    translate,
)
from device_os.tpm.tcti import CountingTcti, Tap
from device_os.tpm.templates import EK_HANDLE, SRK_HANDLE, TRANSIENT_SLOTS
from device_os.tpm.types import DaStatus, KeyBlob
from device_os.tpm.worker import Worker


@dataclass
class HotKey:
    role: str
    blob: KeyBlob
    auth: bytes | None
    public_key: ec.EllipticCurvePublicKey
    handle: Any = None  # ESYS_TR while loaded


T = TypeVar("T")
log = logging.getLogger(__name__)
_HR_TRANSIENT = 0x80000000
_HR_LOADED_SESSION = 0x02000000
_HR_PERSISTENT = 0x81000000
_HR_NV_INDEX = 0x01000000
_TPMA_PERMANENT_LOCKOUT_AUTH_SET = 1 << 2
_TPMA_PERMANENT_IN_LOCKOUT = 1 << 9
_TPM_RC_SUCCESS = 0
_FLUSH_CONTEXT = 0x00000165


class TpmContext:
    """State and shared steps of the TPM adapter; `Tpm` (adapter.py) is the public facade."""

    def __init__(
        self,
        tcti: str,
        *,
        counter_index: int,
        worker: Worker,
        encrypt_sessions: bool,
        tap: Tap | None = None,
    ) -> None:
        self._tcti_conf = tcti
        self._tap = tap
        self._encrypt_sessions = encrypt_sessions
        self._session: Any = None
        self._counter_index = counter_index
        self._worker = worker
        self._tcti: CountingTcti | None = None
        self._esys: Any = None
        self._srk: Any = None
        self._ek: Any = None
        self._counter: Any = None
        self._counter_value: int | None = None
        self._hot: list[HotKey] = []
        self._closed = False
        self._broken = False

    def _run(self, fn: Callable[[], T]) -> T:
        if self._closed:
            raise TpmUnavailable("the TPM adapter is closed")
        return self._worker.run(lambda: self._guarded(fn))

    def _guarded(self, fn: Callable[[], T]) -> T:
        """Run on the worker. After the link to the TPM broke (swtpm restarted, I/O error), the ESAPI context
        is out of sequence: rebuild it first (the TPM lost our transient objects too: hot keys reload at
        their next use, the counter value is read again)."""
        if self._broken:
            self._reconnect()
        try:
            return fn()
        except TpmUnavailable:
            self._broken = True
            raise

    def _reconnect(self) -> None:
        self._disconnect()
        self._srk = self._ek = self._counter = self._session = None
        self._counter_value = None
        for hot in self._hot:
            hot.handle = None
        self._connect()
        self._broken = False
        log.info("reconnected to the TPM")

    def _connect(self) -> None:
        try:
            self._tcti = CountingTcti.parse(self._tcti_conf, previous=self._tcti, tap=self._tap)
            self._esys = ESAPI(self._tcti)
        except TSS2_Exception as exc:
            raise TpmUnavailable(f"cannot open TCTI {self._tcti_conf!r}: {exc}", rc=int(exc.rc)) from exc
        try:
            self._flush_leftovers()
            persistent = self._handles(_HR_PERSISTENT)
            if SRK_HANDLE in persistent:
                self._srk = self._esys.tr_from_tpmpublic(SRK_HANDLE)
            if EK_HANDLE in persistent:
                self._ek = self._esys.tr_from_tpmpublic(EK_HANDLE)
            if self._counter_index in self._handles(_HR_NV_INDEX):
                self._counter = self._esys.tr_from_tpmpublic(self._counter_index)
        except TSS2_Exception as exc:
            raise translate(exc, what="TPM start") from exc

    def _disconnect(self) -> None:
        """Finalize ESAPI and the TCTI; `self._tcti` stays as the record of what was sent."""
        esys, tcti = self._esys, self._tcti
        self._esys = None
        if esys is not None:
            with contextlib.suppress(Exception):
                esys.close()
        if tcti is not None:
            with contextlib.suppress(Exception):
                tcti.finalize()

    def _close(self) -> None:
        try:
            if self._esys is not None:
                with contextlib.suppress(TpmError, TSS2_Exception):
                    self._unload_hot_keys()
                if self._session is not None:
                    session, self._session = self._session, None
                    with contextlib.suppress(TSS2_Exception):
                        self._esys.flush_context(session)
                try:
                    self._esys.shutdown(TPM2_SU.STATE)
                except TSS2_Exception as exc:
                    log.warning("TPM2_Shutdown(STATE) failed: %s", exc)
        finally:
            self._disconnect()

    def _handles(self, first: int) -> list[int]:
        """Handles of the type of `first` (TPM2_GetCapability(TPM_CAP_HANDLES)); loaded sessions are listed
        with their own types, HMAC (0x02) and policy (0x03)."""
        kinds = {0x02, 0x03} if first == _HR_LOADED_SESSION else {first >> 24}
        found: list[int] = []
        more, start = True, first
        while more:
            more, data = self._esys.get_capability(TPM2_CAP.HANDLES, start, 64)
            chunk = [int(h) for h in data.data.handles]
            found += [h for h in chunk if h >> 24 in kinds]
            if not chunk:
                break
            start = chunk[-1] + 1
        return found

    def _flush_leftovers(self) -> None:
        """Flush transient objects and loaded sessions left by a previous process (swtpm has no resource
        manager). Sent as raw TPM2_FlushContext through the TCTI: ESAPI knows nothing of these handles."""
        assert self._tcti is not None
        for handle in self._handles(_HR_TRANSIENT) + self._handles(_HR_LOADED_SESSION):
            command = struct.pack(">HII", TPM2_ST.NO_SESSIONS, 14, _FLUSH_CONTEXT) + struct.pack(">I", handle)
            self._tcti.transmit(command)
            response = self._tcti.receive(4096, -1)
            rc = int.from_bytes(response[6:10], "big") if len(response) >= 10 else -1
            if rc != _TPM_RC_SUCCESS:
                log.warning("flushing leftover handle 0x%08x failed: rc 0x%x", handle, rc)
            else:
                log.info("flushed leftover handle 0x%08x", handle)

    def _secure(self, attributes: int = 0) -> Any:
        """The session for a command that carries a PIN or a secret: the salted HMAC session with
        `attributes` (TPMA_SESSION DECRYPT: the first command parameter is encrypted; ENCRYPT: the first
        response parameter), or a password session when encrypted sessions are off."""
        if not self._encrypt_sessions:
            return ESYS_TR.PASSWORD
        if self._session is None:
            self._session = self._esys.start_auth_session(
                tpm_key=self._require_srk(),
                bind=ESYS_TR.NONE,
                session_type=TPM2_SE.HMAC,
                symmetric=TPMT_SYM_DEF.parse("aes128cfb"),
                auth_hash=TPM2_ALG.SHA256,
            )
        mask = TPMA_SESSION.CONTINUESESSION | TPMA_SESSION.DECRYPT | TPMA_SESSION.ENCRYPT
        self._esys.trsess_set_attributes(self._session, TPMA_SESSION.CONTINUESESSION | attributes, mask)
        return self._session

    def _require_srk(self) -> Any:
        if self._srk is None:
            raise TpmNotProvisioned("no storage root key at 0x81000001: provision first")
        return self._srk

    def _read_public(self, handle: Any) -> TPM2B_PUBLIC:
        public, _name, _qualified = self._esys.read_public(handle)
        return public

    def _blob_parts(self, blob: KeyBlob) -> tuple[TPM2B_PUBLIC, TPM2B_PRIVATE]:
        try:
            public, used = TPM2B_PUBLIC.unmarshal(blob.public)
            private, used_private = TPM2B_PRIVATE.unmarshal(blob.private)
        except Exception as exc:  # the TSS raises TSS2_Exception or TypeError/ValueError for garbage
            raise BadBlob("key blob does not unmarshal") from exc
        if used != len(blob.public) or used_private != len(blob.private):
            raise BadBlob("key blob has trailing bytes")
        return public, private

    def _check_blob_template(self, blob: KeyBlob, template: TPM2B_PUBLIC) -> None:
        public, _ = self._blob_parts(blob)
        area, want = public.publicArea, template.publicArea
        if area.type != want.type or int(area.objectAttributes) != int(want.objectAttributes):
            raise BadBlob("key blob is not of the expected kind")

    def _load(self, blob: KeyBlob, auth: bytes | None = None) -> Any:
        public, private = self._blob_parts(blob)
        handle = self._esys.load(self._require_srk(), private, public)
        if auth is not None:
            self._esys.tr_set_auth(handle, auth)
        return handle

    def _flush(self, handle: Any) -> None:
        self._esys.flush_context(handle)

    def _create_raw(self, template: TPM2B_PUBLIC, sensitive: TPMS_SENSITIVE_CREATE) -> KeyBlob:
        private, public, *_ = self._esys.create(
            self._require_srk(),
            TPM2B_SENSITIVE_CREATE(sensitive=sensitive),
            template,
            session1=self._secure(TPMA_SESSION.DECRYPT),
        )
        return KeyBlob(public=public.marshal(), private=private.marshal())

    def _create(self, template: TPM2B_PUBLIC, sensitive: TPMS_SENSITIVE_CREATE) -> KeyBlob:
        try:
            # TPM2_Create needs the SRK's temporary slot and one for the object it builds.
            with self._slots(2):
                return self._create_raw(template, sensitive)
        except TSS2_Exception as exc:
            raise translate(exc, what="TPM2_Create") from exc

    def _pin_error(self, exc: TSS2_Exception, what: str) -> TpmError:
        rc = int(exc.rc)
        if is_lockout(rc):
            return Lockout(self._retry_after(), rc=rc)
        if is_auth_failure(rc):
            return TpmWrongPin(self._da_status().tries_left, rc=rc)
        return translate(exc, what=what)

    def _retry_after(self, status: DaStatus | None = None) -> int:
        status = status or self._da_status()
        return status.recovery_time if status.recovery_time else status.lockout_recovery

    def _da_status(self) -> DaStatus:
        try:
            _more, data = self._esys.get_capability(TPM2_CAP.TPM_PROPERTIES, TPM2_PT.PERMANENT, 0x12)
        except TSS2_Exception as exc:
            raise translate(exc, what="reading the DA state") from exc
        props = {int(p.property): int(p.value) for p in data.data.tpmProperties}
        permanent = props.get(int(TPM2_PT.PERMANENT), 0)
        return DaStatus(
            failed_tries=props.get(int(TPM2_PT.LOCKOUT_COUNTER), 0),
            max_tries=props.get(int(TPM2_PT.MAX_AUTH_FAIL), 0),
            recovery_time=props.get(int(TPM2_PT.LOCKOUT_INTERVAL), 0),
            lockout_recovery=props.get(int(TPM2_PT.LOCKOUT_RECOVERY), 0),
            in_lockout=bool(permanent & _TPMA_PERMANENT_IN_LOCKOUT),
            lockout_auth_set=bool(permanent & _TPMA_PERMANENT_LOCKOUT_AUTH_SET),
        )

    @contextlib.contextmanager
    def _slots(self, needed: int) -> Iterator[None]:
        """Make `needed` transient slots free for a cold operation: flush hot keys, newest first; reload
        them in the fixed order (KEM, payment) afterwards."""
        evicted: list[HotKey] = []
        loaded = [hot for hot in self._hot if hot.handle is not None]
        while TRANSIENT_SLOTS - len(loaded) < needed and loaded:
            hot = loaded.pop()
            self._flush(hot.handle)
            hot.handle = None
            evicted.append(hot)
        try:
            yield
        finally:
            for hot in reversed(evicted):
                try:
                    self._load_hot(hot)
                except (TSS2_Exception, TpmError) as exc:  # reloaded lazily at the next use
                    log.warning("reloading the %s key failed: %s", hot.role, exc)

    def _load_hot(self, hot: HotKey) -> None:
        hot.handle = self._load(hot.blob, hot.auth)

    def _unload_hot_keys(self) -> None:
        """Flush the hot keys and forget their PIN: a KemKey/PaymentKey still referenced elsewhere (a wallet
        of an earlier unlock) then holds neither a handle nor the PIN, and raises KeyNotLoaded."""
        hot_keys, self._hot = self._hot, []
        for hot in hot_keys:
            hot.auth = None
        for hot in reversed(hot_keys):
            if hot.handle is not None:
                handle, hot.handle = hot.handle, None
                try:
                    self._flush(handle)
                except TSS2_Exception as exc:
                    raise translate(exc, what="flushing a hot key") from exc
