"""The TPM adapter: every TPM command of the device goes through `Tpm` (DESIGN.md "Keys", "TPM discipline").

Discipline, as implemented here:

- One ESAPI context per `Tpm`, created and used only on one worker thread: every public method (and every
  `exchange`/`sign` of a hot key) is serialized on it. Calls from any thread block until done.
- Commands are counted below ESAPI by a wrapping TCTI (`tcti.CountingTcti`): `tpm.commands`.
- At open, leftover transient objects and loaded sessions (a crashed process's) are flushed.
- Storage root key: the TCG-style ECC P-256 SRK (restricted decrypt, AES-128-CFB, noDA) persisted at
  0x81000001 by `provision()`; children load under it with one TPM2_Load and no primary creation.
  Persistent objects still take a transient slot while a command uses them (swtpm has 3 slots, no resource
  manager), so the slot plan below counts them.
- Slot plan: hot keys load in a fixed order, KEM then payment (2 slots), and stay loaded. A cold operation
  declares the slots it needs at its peak (Load under the SRK = 2: the SRK's temporary slot + the new
  object); if they are not free, hot keys are flushed in reverse order first and reloaded in order after.
  The purchase hot path therefore sends exactly ECDH_ZGen, Sign and NV_Increment.
- Every object without a PIN has noDA; the KEM key, the payment key and the sealed DEK carry the PIN as
  authValue and are DA-protected (without the PIN the TPM computes no ECDH: a stolen board is no oracle).
  Wrong PIN -> `WrongPin(tries_left)`; lockout -> `Lockout(retry_after)`.
- Sessions: one salted HMAC session (salt encrypted to the SRK, AES-128-CFB parameter encryption,
  continueSession) is started once and reused for every command that carries a PIN or a secret: Create
  (the sensitive part: PIN, sealed data), Unseal (the response), ObjectChangeAuth (the new PIN),
  HierarchyChangeAuth (the lockout authorization at provisioning), and the authorization of Sign, ECDH_ZGen
  and Certify with the PIN (an HMAC: the PIN itself never crosses the bus). Objects
  with an empty authValue use password sessions. `encrypt_sessions=False` uses password sessions only.
- `close()` flushes what it loaded and sends TPM2_Shutdown(STATE) (an orderly shutdown: the next start does
  not count a DA failure for the DA-protected objects used since).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import logging
import os
import secrets
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric import ec
from tpm2_pytss import ESAPI, TSS2_Exception
from tpm2_pytss.constants import (
    ESYS_TR,
    TPM2_ALG,
    TPM2_CAP,
    TPM2_NT,
    TPM2_PT,
    TPM2_RH,
    TPM2_SE,
    TPM2_ST,
    TPM2_SU,
    TPMA_NV,
    TPMA_OBJECT,
    TPMA_SESSION,
)
from tpm2_pytss.types import (
    TPM2B_AUTH,
    TPM2B_DATA,
    TPM2B_DIGEST,
    TPM2B_ECC_PARAMETER,
    TPM2B_ECC_POINT,
    TPM2B_ENCRYPTED_SECRET,
    TPM2B_ID_OBJECT,
    TPM2B_NONCE,
    TPM2B_NV_PUBLIC,
    TPM2B_PRIVATE,
    TPM2B_PUBLIC,
    TPM2B_SENSITIVE_CREATE,
    TPM2B_SENSITIVE_DATA,
    TPMS_ECC_POINT,
    TPMS_NV_PUBLIC,
    TPMS_SENSITIVE_CREATE,
    TPMT_SIG_SCHEME,
    TPMT_SYM_DEF,
    TPMT_TK_HASHCHECK,
)
from tpm2_pytss.utils import NVReadEK, create_ek_template

from device_os.tpm.errors import (
    BadBlob,
    KeyNotLoaded,
    Lockout,
    NotProvisioned,
    ProvisioningConflict,
    TpmError,
    TpmUnavailable,
    WrongPin,
    is_auth_failure,
    is_lockout,
    translate,
)
from device_os.tpm.tcti import CountingTcti, Tap
from device_os.tpm.types import DaStatus, KeyBlob, ProvisionedKeys
from protocol.attestation import CertifyEvidence, parse_public
from protocol.errors import AttestationError

__all__ = [
    "COUNTER_INDEX",
    "DA_LOCKOUT_RECOVERY",
    "DA_MAX_TRIES",
    "DA_RECOVERY_TIME",
    "EK_CERT_INDEX",
    "EK_HANDLE",
    "SRK_HANDLE",
    "KemKey",
    "PaymentKey",
    "Tpm",
]

T = TypeVar("T")
log = logging.getLogger(__name__)

# libtss2 writes its own log lines to stderr (not through Python logging), at ERROR for expected conditions
# such as a wrong PIN; every failure reaches callers as an exception here. Quiet by default: set TSS2_LOG
# (e.g. "all+debug") in the environment to see them. Read by libtss2 at its first log call.
os.environ.setdefault("TSS2_LOG", "all+NONE")

SRK_HANDLE = 0x81000001  # TCG Provisioning Guidance: the storage root key
EK_HANDLE = 0x81010001  # TCG: the RSA-2048 EK (swtpm_setup persists it there)
EK_CERT_INDEX = 0x01C00002  # TCG EK Credential Profile: RSA-2048 EK certificate
COUNTER_INDEX = 0x0100C0FE  # owner NV range: the wallet counter
DA_MAX_TRIES = 10
DA_RECOVERY_TIME = 600
DA_LOCKOUT_RECOVERY = 86400
TRANSIENT_SLOTS = 3  # swtpm's MAX_LOADED_OBJECTS; also the spec minimum (TPM_PT_HR_TRANSIENT_MIN)
MAX_PIN_BYTES = 32  # an authValue is at most the nameAlg digest size (SHA-256)
MAX_SEALED_BYTES = 128  # MAX_SYM_DATA
MAX_NONCE_BYTES = 32
_HR_TRANSIENT = 0x80000000
_HR_LOADED_SESSION = 0x02000000
_HR_PERSISTENT = 0x81000000
_HR_NV_INDEX = 0x01000000
_TPMA_PERMANENT_LOCKOUT_AUTH_SET = 1 << 2
_TPMA_PERMANENT_IN_LOCKOUT = 1 << 9
_TPM_RC_SUCCESS = 0
_FLUSH_CONTEXT = 0x00000165

_BASE_ATTRS = TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.USERWITHAUTH
_GENERATED = _BASE_ATTRS | TPMA_OBJECT.SENSITIVEDATAORIGIN
SRK_ATTRS = _GENERATED | TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.DECRYPT | TPMA_OBJECT.NODA
AK_ATTRS = _GENERATED | TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.SIGN_ENCRYPT | TPMA_OBJECT.NODA
KEM_ATTRS = _GENERATED | TPMA_OBJECT.DECRYPT
PAYMENT_ATTRS = _GENERATED | TPMA_OBJECT.SIGN_ENCRYPT
SEALED_ATTRS = _BASE_ATTRS
COUNTER_ATTRS = (
    TPMA_NV.OWNERWRITE
    | TPMA_NV.OWNERREAD
    | TPMA_NV.AUTHWRITE
    | TPMA_NV.AUTHREAD
    | TPMA_NV.NO_DA
    | (TPM2_NT.COUNTER << TPMA_NV.TPM2_NT_SHIFT)
)


def _template(alg: str, attrs: int) -> TPM2B_PUBLIC:
    public = TPM2B_PUBLIC.parse(alg, objectAttributes=attrs)
    if public.publicArea.type == TPM2_ALG.ECC and not attrs & TPMA_OBJECT.DECRYPT:
        # A signing key has no symmetric definition (create fails otherwise; FACTS.md).
        public.publicArea.parameters.eccDetail.symmetric.algorithm = TPM2_ALG.NULL
    return public


def srk_template() -> TPM2B_PUBLIC:
    return _template("ecc256:aes128cfb", SRK_ATTRS)


def ak_template() -> TPM2B_PUBLIC:
    return _template("ecc256:ecdsa-sha256", AK_ATTRS)


def kem_template() -> TPM2B_PUBLIC:
    return _template("ecc256:ecdh-sha256", KEM_ATTRS)


def payment_template() -> TPM2B_PUBLIC:
    return _template("ecc256:ecdsa-sha256", PAYMENT_ATTRS)


def sealed_template() -> TPM2B_PUBLIC:
    return TPM2B_PUBLIC.parse("keyedhash", objectAttributes=SEALED_ATTRS)


def _check_pin(pin: bytes) -> bytes:
    if not isinstance(pin, bytes) or not 0 < len(pin) <= MAX_PIN_BYTES:
        raise ValueError(f"a PIN must be 1..{MAX_PIN_BYTES} bytes")
    if pin.endswith(b"\x00"):
        # The TPM strips trailing zero bytes from an authValue: b"12\0" would equal b"12".
        raise ValueError("a PIN must not end with a zero byte")
    return pin


def _pad32(value: bytes) -> bytes:
    if len(value) > 32:
        raise TpmError("TPM returned an ECC value longer than 32 bytes")
    return value.rjust(32, b"\x00")


class _Worker:
    """One thread that runs every TPM call, in submission order."""

    def __init__(self) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="tpm")
        self._thread_id: int | None = None
        self._executor.submit(self._remember_thread).result()

    def _remember_thread(self) -> None:
        self._thread_id = threading.get_ident()

    def run(self, fn: Callable[[], T]) -> T:
        if threading.get_ident() == self._thread_id:
            return fn()
        return self._executor.submit(fn).result()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)


@dataclass
class _HotKey:
    role: str
    blob: KeyBlob
    auth: bytes | None
    public_key: ec.EllipticCurvePublicKey
    handle: Any = None  # ESYS_TR while loaded


class KemKey:
    """The device's HPKE recipient key: ECDH runs in the TPM (TPM2_ECDH_ZGen); the private key never leaves.

    Satisfies `protocol.hpke.RecipientKey`: `public_key()` and `exchange(ec.ECDH(), peer)`.
    """

    def __init__(self, tpm: Tpm, hot: _HotKey) -> None:
        self._tpm = tpm
        self._hot = hot

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._hot.public_key

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        """TPM2_ECDH_ZGen (Part 3 §14.5): the x-coordinate of d·Q, 32 bytes, as cryptography's exchange()."""
        if not isinstance(algorithm, ec.ECDH):
            raise TypeError("only ECDH is supported")
        if not isinstance(peer_public_key, ec.EllipticCurvePublicKey) or not isinstance(
            peer_public_key.curve, ec.SECP256R1
        ):
            raise ValueError("peer key must be a P-256 public key")
        numbers = peer_public_key.public_numbers()
        x, y = numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big")
        return self._tpm._run(lambda: self._tpm._ecdh_zgen(self._hot, x, y))


class PaymentKey:
    """The PIN-bound payment key: a `protocol.jws.Signer` whose ECDSA runs in the TPM (TPM2_Sign)."""

    def __init__(self, tpm: Tpm, hot: _HotKey) -> None:
        self._tpm = tpm
        self._hot = hot

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._hot.public_key

    def sign(self, data: bytes) -> bytes:
        """ECDSA P-256 / SHA-256 over `data` (hashed here, signed in the TPM); returns raw r||s (64 bytes)."""
        digest = hashlib.sha256(data).digest()
        return self._tpm._run(lambda: self._tpm._sign(self._hot, digest))


class Tpm:
    """The device's TPM. Use `Tpm.open(tcti)`; see device_os/tpm/__init__.py for the API."""

    def __init__(
        self,
        tcti: str,
        *,
        counter_index: int,
        worker: _Worker,
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
        self._hot: list[_HotKey] = []
        self._closed = False
        self._broken = False

    # -- lifecycle -------------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        tcti: str,
        *,
        counter_index: int = COUNTER_INDEX,
        encrypt_sessions: bool = True,
        tap: Tap | None = None,
    ) -> Tpm:
        """Connect by TCTI string (`swtpm:host=H,port=P`, `swtpm:path=S`, `device:/dev/tpmrm0`), flush
        leftover transient objects and sessions, and look up the persistent objects. `tap` (tests) sees
        every command buffer as sent to the TPM."""
        worker = _Worker()
        tpm = cls(
            tcti, counter_index=counter_index, worker=worker, encrypt_sessions=encrypt_sessions, tap=tap
        )
        try:
            worker.run(tpm._connect)
        except BaseException:
            worker.run(tpm._disconnect)
            worker.shutdown()
            raise
        return tpm

    def close(self) -> None:
        """Flush hot keys and the session, send TPM2_Shutdown(STATE) and disconnect. Idempotent."""
        if self._closed:
            return
        try:
            self._worker.run(self._close)
        finally:
            self._closed = True
            self._worker.shutdown()

    def __enter__(self) -> Tpm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def commands(self) -> int:
        """TPM commands sent since open, counted at the TCTI."""
        return self._tcti.count if self._tcti is not None else 0

    @property
    def retries(self) -> int:
        """Resubmissions the TPM asked for (TPM_RC_RETRY …), not counted in `commands`; see tcti.py."""
        return self._tcti.retries if self._tcti is not None else 0

    def command_times(self, *, clear: bool = False) -> list[tuple[str, float]]:
        """(command name, seconds on the TCTI: transmit to response) for recent commands (benchmarks)."""
        return self._tcti.command_times(clear=clear) if self._tcti is not None else []

    def recent_commands(self) -> list[str]:
        """Names of the most recent TPM commands (oldest first), for diagnostics and tests."""
        return self._tcti.recent() if self._tcti is not None else []

    # -- public API (each runs on the worker) ----------------------------------------------------------

    def provision(self, existing: ProvisionedKeys | None = None) -> ProvisionedKeys:
        """First boot, idempotent: SRK (persisted), EK (persisted, its certificate in NV), the AK (returned
        as a blob; an `existing` one is checked to load and kept), the wallet NV counter (defined and
        incremented once), DA parameters (10 tries, 600 s, 86400 s) and a random, forgotten lockout auth.
        The PIN-bound KEM and payment keys are made at setup (`create_kem_key`, `create_payment_key`)."""
        return self._run(lambda: self._provision(existing))

    def ek_certificate(self) -> bytes:
        """The RSA-2048 EK certificate (DER) from NV 0x01c00002."""
        return self._run(self._ek_certificate)

    def ek_public(self) -> bytes:
        """The EK's marshalled TPM2B_PUBLIC (for MakeCredential on the center)."""
        return self._run(self._ek_public)

    def public_key(self, blob: KeyBlob) -> ec.EllipticCurvePublicKey:
        """The P-256 public key of a key blob (parsed in software; no TPM command)."""
        try:
            return parse_public(blob.public).ec_public_key()
        except AttestationError as exc:
            raise BadBlob(f"not an ECC key blob: {exc}") from exc

    def create_kem_key(self, pin: bytes) -> KeyBlob:
        """A new ECC P-256 ECDH (decrypt) key under the SRK, authValue = PIN (DA-protected)."""
        pin = _check_pin(pin)
        return self._run(
            lambda: self._create(kem_template(), TPMS_SENSITIVE_CREATE(userAuth=TPM2B_AUTH(pin)))
        )

    def create_payment_key(self, pin: bytes) -> KeyBlob:
        """A new ECC P-256 ECDSA signing key under the SRK, authValue = PIN (DA-protected)."""
        pin = _check_pin(pin)
        return self._run(
            lambda: self._create(payment_template(), TPMS_SENSITIVE_CREATE(userAuth=TPM2B_AUTH(pin)))
        )

    def seal(self, secret: bytes, pin: bytes) -> KeyBlob:
        """Seal `secret` (1..128 bytes) in a KEYEDHASH object under the SRK, authValue = PIN."""
        pin = _check_pin(pin)
        if not 0 < len(secret) <= MAX_SEALED_BYTES:
            raise ValueError(f"sealed data must be 1..{MAX_SEALED_BYTES} bytes")
        sensitive = TPMS_SENSITIVE_CREATE(userAuth=TPM2B_AUTH(pin), data=TPM2B_SENSITIVE_DATA(secret))
        return self._run(lambda: self._create(sealed_template(), sensitive))

    def unseal(self, blob: KeyBlob, pin: bytes) -> bytes:
        """TPM2_Unseal with the PIN. Raises WrongPin(tries_left) or Lockout(retry_after)."""
        pin = _check_pin(pin)
        return self._run(lambda: self._unseal(blob, pin))

    def change_auth(self, blob: KeyBlob, old_pin: bytes, new_pin: bytes) -> KeyBlob:
        """TPM2_ObjectChangeAuth: the same object (public part) with a new private part under `new_pin`.
        The old blob keeps working with the old PIN: the caller must replace it."""
        old_pin, new_pin = _check_pin(old_pin), _check_pin(new_pin)
        return self._run(lambda: self._change_auth(blob, old_pin, new_pin))

    def certify(self, ak: KeyBlob, key: KeyBlob, nonce: bytes, pin: bytes | None = None) -> CertifyEvidence:
        """TPM2_Certify of `key` by the attestation key, qualifyingData = `nonce` (<= 32 bytes). A PIN-bound
        key needs its PIN (Certify uses the ADMIN role of the certified object)."""
        if len(nonce) > MAX_NONCE_BYTES:
            raise ValueError(f"nonce must be at most {MAX_NONCE_BYTES} bytes")
        auth = _check_pin(pin) if pin is not None else None
        return self._run(lambda: self._certify(ak, key, nonce, auth))

    def activate_credential(self, ak: KeyBlob, credential_blob: bytes, encrypted_secret: bytes) -> bytes:
        """TPM2_ActivateCredential with the AK and the EK (policy session: PolicySecret(endorsement)).
        Inputs are the marshalled TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET of MakeCredential."""
        return self._run(lambda: self._activate(ak, credential_blob, encrypted_secret))

    def load_hot_keys(self, kem: KeyBlob, payment: KeyBlob, pin: bytes) -> tuple[KemKey, PaymentKey]:
        """Load the KEM key then the payment key (both with the PIN as auth) and keep them loaded until
        `unload_hot_keys()`. Their exchange()/sign() then cost exactly one TPM command each."""
        pin = _check_pin(pin)
        return self._run(lambda: self._load_hot_keys(kem, payment, pin))

    def unload_hot_keys(self) -> None:
        self._run(self._unload_hot_keys)

    def counter_read(self) -> int:
        """TPM2_NV_Read of the wallet counter (one command)."""
        return self._run(self._counter_read)

    def counter_increment(self) -> int:
        """TPM2_NV_Increment of the wallet counter; returns the new value. Exactly one command once the
        value is known (after provision(), counter_read() or a previous increment); a failure forgets it."""
        return self._run(self._counter_increment)

    def da_status(self) -> DaStatus:
        return self._run(self._da_status)

    # -- worker-side implementation --------------------------------------------------------------------

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
            raise NotProvisioned("no storage root key at 0x81000001: provision first")
        return self._srk

    # provisioning

    def _provision(self, existing: ProvisionedKeys | None) -> ProvisionedKeys:
        try:
            self._ensure_srk()
            self._ensure_ek()
            if existing is not None:
                keys = existing
                with self._slots(2):
                    self._check_blob_template(keys.ak, ak_template())
                    self._flush(self._load(keys.ak))
            else:
                with self._slots(2):
                    keys = ProvisionedKeys(ak=self._create_raw(ak_template(), TPMS_SENSITIVE_CREATE()))
            self._ensure_counter()
            self._ensure_dictionary_attack_policy()
            return keys
        except TSS2_Exception as exc:
            raise translate(exc, what="provisioning") from exc

    def _read_public(self, handle: Any) -> TPM2B_PUBLIC:
        public, _name, _qualified = self._esys.read_public(handle)
        return public

    def _ensure_srk(self) -> None:
        template = srk_template().publicArea
        if self._srk is None:
            primary, *_ = self._esys.create_primary(TPM2B_SENSITIVE_CREATE(), srk_template(), ESYS_TR.OWNER)
            try:
                self._srk = self._esys.evict_control(ESYS_TR.OWNER, primary, SRK_HANDLE)
            finally:
                self._esys.flush_context(primary)
            log.info("storage root key persisted at 0x%08x", SRK_HANDLE)
        area = self._read_public(self._srk).publicArea
        if (
            area.type != template.type
            or area.nameAlg != template.nameAlg
            or int(area.objectAttributes) != int(template.objectAttributes)
            or area.parameters.eccDetail.marshal() != template.parameters.eccDetail.marshal()
        ):
            raise ProvisioningConflict("0x81000001 holds a key that is not Coffer's storage root key")

    def _ensure_ek(self) -> None:
        if self._ek is not None:
            return
        # No persisted EK (a discrete TPM as shipped): create the TCG default RSA-2048 EK from the template
        # matching its certificate, and persist it once (RSA primary creation can take seconds).
        _cert, template = create_ek_template("EK-RSA2048", NVReadEK(self._esys))
        primary, *_ = self._esys.create_primary(TPM2B_SENSITIVE_CREATE(), template, ESYS_TR.ENDORSEMENT)
        try:
            self._ek = self._esys.evict_control(ESYS_TR.OWNER, primary, EK_HANDLE)
        finally:
            self._esys.flush_context(primary)
        log.info("endorsement key persisted at 0x%08x", EK_HANDLE)

    def _ensure_counter(self) -> None:
        if self._counter is None:
            public = TPM2B_NV_PUBLIC(
                nvPublic=TPMS_NV_PUBLIC(
                    nvIndex=self._counter_index,
                    nameAlg=TPM2_ALG.SHA256,
                    attributes=COUNTER_ATTRS,
                    dataSize=8,
                )
            )
            self._counter = self._esys.nv_define_space(TPM2B_AUTH(b""), public, ESYS_TR.OWNER)
            log.info("wallet counter defined at 0x%08x", self._counter_index)
        nv_public, _name = self._esys.nv_read_public(self._counter)
        attributes = int(nv_public.nvPublic.attributes)
        if attributes & ~int(TPMA_NV.WRITTEN) != int(COUNTER_ATTRS) or nv_public.nvPublic.dataSize != 8:
            raise ProvisioningConflict(f"NV index 0x{self._counter_index:08x} is not Coffer's wallet counter")
        if not attributes & TPMA_NV.WRITTEN:
            self._esys.nv_increment(self._counter, auth_handle=self._counter)
        self._counter_value = self._counter_read()

    def _ensure_dictionary_attack_policy(self) -> None:
        status = self._da_status()
        if status.lockout_auth_set:
            if (status.max_tries, status.recovery_time, status.lockout_recovery) != (
                DA_MAX_TRIES,
                DA_RECOVERY_TIME,
                DA_LOCKOUT_RECOVERY,
            ):
                raise ProvisioningConflict("the lockout authorization was set by someone else")
            return
        self._esys.dictionary_attack_parameters(DA_MAX_TRIES, DA_RECOVERY_TIME, DA_LOCKOUT_RECOVERY)
        self._esys.dictionary_attack_lock_reset(ESYS_TR.LOCKOUT)
        # The lockout authorization: 32 random bytes, set and forgotten. Nobody can reset the DA counter
        # or change these parameters afterwards (short of TPM2_Clear with the platform hierarchy). The new
        # value is the command's first parameter: it travels encrypted in the salted session, never in clear.
        self._esys.hierarchy_change_auth(
            ESYS_TR.LOCKOUT,
            TPM2B_AUTH(secrets.token_bytes(32)),
            session1=self._secure(TPMA_SESSION.DECRYPT),
        )
        self._esys.tr_set_auth(ESYS_TR.LOCKOUT, b"")
        log.info("dictionary-attack parameters set; lockout authorization set and forgotten")

    # objects

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
            return WrongPin(self._da_status().tries_left, rc=rc)
        return translate(exc, what=what)

    def _retry_after(self, status: DaStatus | None = None) -> int:
        status = status or self._da_status()
        return status.recovery_time if status.recovery_time else status.lockout_recovery

    def _unseal(self, blob: KeyBlob, pin: bytes) -> bytes:
        with self._slots(2):
            try:
                handle = self._load(blob, pin)
            except TSS2_Exception as exc:
                raise translate(exc, what="loading the sealed object") from exc
            try:
                return bytes(self._esys.unseal(handle, session1=self._secure(TPMA_SESSION.ENCRYPT)))
            except TSS2_Exception as exc:
                raise self._pin_error(exc, "TPM2_Unseal") from exc
            finally:
                self._flush(handle)

    def _change_auth(self, blob: KeyBlob, old_pin: bytes, new_pin: bytes) -> KeyBlob:
        with self._slots(2):
            try:
                handle = self._load(blob, old_pin)
            except TSS2_Exception as exc:
                raise translate(exc, what="loading the object") from exc
            try:
                private = self._esys.object_change_auth(
                    handle, self._srk, TPM2B_AUTH(new_pin), session1=self._secure(TPMA_SESSION.DECRYPT)
                )
            except TSS2_Exception as exc:
                raise self._pin_error(exc, "TPM2_ObjectChangeAuth") from exc
            finally:
                self._flush(handle)
        return KeyBlob(public=blob.public, private=private.marshal())

    def _certify(self, ak: KeyBlob, key: KeyBlob, nonce: bytes, auth: bytes | None) -> CertifyEvidence:
        with self._slots(TRANSIENT_SLOTS):
            try:
                ak_handle = self._load(ak)
            except TSS2_Exception as exc:
                raise translate(exc, what="loading the attestation key") from exc
            try:
                key_handle = self._load(key, auth)
            except TSS2_Exception as exc:
                self._flush(ak_handle)
                raise translate(exc, what="loading the key to certify") from exc
            try:
                attest, signature = self._esys.certify(
                    key_handle,
                    ak_handle,
                    TPM2B_DATA(nonce),
                    TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL),
                    session1=self._secure() if auth is not None else ESYS_TR.PASSWORD,
                    session2=ESYS_TR.PASSWORD,
                )
            except TSS2_Exception as exc:
                raise self._pin_error(exc, "TPM2_Certify") from exc
            finally:
                self._flush(key_handle)
                self._flush(ak_handle)
        return CertifyEvidence(
            attest=bytes(attest),
            signature=_pad32(bytes(signature.signature.ecdsa.signatureR))
            + _pad32(bytes(signature.signature.ecdsa.signatureS)),
            certified_public=key.public,
            ak_public=ak.public,
        )

    def _activate(self, ak: KeyBlob, credential_blob: bytes, encrypted_secret: bytes) -> bytes:
        if self._ek is None:
            raise NotProvisioned("no EK at 0x81010001: provision first")
        try:
            id_object, used = TPM2B_ID_OBJECT.unmarshal(credential_blob)
            secret, used_secret = TPM2B_ENCRYPTED_SECRET.unmarshal(encrypted_secret)
        except Exception as exc:
            raise TpmError("credential blob or encrypted secret does not unmarshal") from exc
        if used != len(credential_blob) or used_secret != len(encrypted_secret):
            raise TpmError("trailing bytes after the credential blob or encrypted secret")
        with self._slots(2):
            try:
                ak_handle = self._load(ak)
            except TSS2_Exception as exc:
                raise translate(exc, what="loading the attestation key") from exc
            session = None
            try:
                session = self._esys.start_auth_session(
                    tpm_key=ESYS_TR.NONE,
                    bind=ESYS_TR.NONE,
                    session_type=TPM2_SE.POLICY,
                    symmetric=TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL),
                    auth_hash=TPM2_ALG.SHA256,
                    nonce_caller=TPM2B_NONCE(secrets.token_bytes(32)),
                )
                self._esys.policy_secret(
                    ESYS_TR.ENDORSEMENT, session, TPM2B_NONCE(b""), TPM2B_DIGEST(b""), TPM2B_NONCE(b""), 0
                )
                cert_info = self._esys.activate_credential(
                    ak_handle, self._ek, id_object, secret, session1=ESYS_TR.PASSWORD, session2=session
                )
                session = None  # the TPM flushed it (continueSession is clear after use)
                return bytes(cert_info)
            except TSS2_Exception as exc:
                raise translate(exc, what="TPM2_ActivateCredential") from exc
            finally:
                if session is not None:
                    with contextlib.suppress(TSS2_Exception):
                        self._esys.flush_context(session)
                self._flush(ak_handle)

    # hot keys

    @contextlib.contextmanager
    def _slots(self, needed: int) -> Iterator[None]:
        """Make `needed` transient slots free for a cold operation: flush hot keys, newest first; reload
        them in the fixed order (KEM, payment) afterwards."""
        evicted: list[_HotKey] = []
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

    def _load_hot(self, hot: _HotKey) -> None:
        hot.handle = self._load(hot.blob, hot.auth)

    def _ensure_loaded(self, hot: _HotKey) -> Any:
        if hot not in self._hot:
            raise KeyNotLoaded(f"the {hot.role} key was unloaded")
        if hot.handle is None:
            try:
                self._load_hot(hot)
            except TSS2_Exception as exc:
                raise translate(exc, what=f"reloading the {hot.role} key") from exc
        return hot.handle

    def _load_hot_keys(self, kem: KeyBlob, payment: KeyBlob, pin: bytes) -> tuple[KemKey, PaymentKey]:
        self._unload_hot_keys()
        kem_hot = _HotKey("KEM", kem, pin, self.public_key(kem))
        payment_hot = _HotKey("payment", payment, pin, self.public_key(payment))
        self._check_blob_template(kem, kem_template())
        self._check_blob_template(payment, payment_template())
        try:
            self._load_hot(kem_hot)
            self._hot.append(kem_hot)
            self._load_hot(payment_hot)
            self._hot.append(payment_hot)
        except TSS2_Exception as exc:
            self._unload_hot_keys()
            raise translate(exc, what="loading the hot keys") from exc
        return KemKey(self, kem_hot), PaymentKey(self, payment_hot)

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

    def _ecdh_zgen(self, hot: _HotKey, x: bytes, y: bytes) -> bytes:
        handle = self._ensure_loaded(hot)
        point = TPM2B_ECC_POINT(TPMS_ECC_POINT(x=TPM2B_ECC_PARAMETER(x), y=TPM2B_ECC_PARAMETER(y)))
        try:
            # The PIN authorizes by HMAC in the salted session; ENCRYPT keeps Z (the response) off the bus.
            z = self._esys.ecdh_zgen(
                handle,
                point,
                session1=self._secure(TPMA_SESSION.ENCRYPT) if hot.auth is not None else ESYS_TR.PASSWORD,
            )
        except TSS2_Exception as exc:
            raise self._pin_error(exc, "TPM2_ECDH_ZGen") from exc
        return _pad32(bytes(z.point.x))

    def _sign(self, hot: _HotKey, digest: bytes) -> bytes:
        handle = self._ensure_loaded(hot)
        # An unrestricted key signs an external digest with the NULL ticket (Part 3 §20.2).
        ticket = TPMT_TK_HASHCHECK(tag=TPM2_ST.HASHCHECK, hierarchy=TPM2_RH.NULL)
        try:
            signature = self._esys.sign(
                handle,
                TPM2B_DIGEST(digest),
                TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL),
                ticket,
                session1=self._secure() if hot.auth is not None else ESYS_TR.PASSWORD,
            )
        except TSS2_Exception as exc:
            raise self._pin_error(exc, "TPM2_Sign") from exc
        return _pad32(bytes(signature.signature.ecdsa.signatureR)) + _pad32(
            bytes(signature.signature.ecdsa.signatureS)
        )

    # NV counter and DA

    def _require_counter(self) -> Any:
        if self._counter is None:
            raise NotProvisioned(f"no wallet counter at 0x{self._counter_index:08x}: provision first")
        return self._counter

    def _counter_read(self) -> int:
        counter = self._require_counter()
        try:
            data = bytes(self._esys.nv_read(counter, 8, 0, auth_handle=counter))
        except TSS2_Exception as exc:
            self._counter_value = None
            raise translate(exc, what="TPM2_NV_Read") from exc
        self._counter_value = int.from_bytes(data, "big")
        return self._counter_value

    def _counter_increment(self) -> int:
        counter = self._require_counter()
        if self._counter_value is None:
            self._counter_read()
        assert self._counter_value is not None
        before, self._counter_value = self._counter_value, None
        try:
            self._esys.nv_increment(counter, auth_handle=counter)
        except TSS2_Exception as exc:
            raise translate(exc, what="TPM2_NV_Increment") from exc
        self._counter_value = before + 1
        return self._counter_value

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

    # EK

    def _ek_certificate(self) -> bytes:
        try:
            raw = NVReadEK(self._esys)(EK_CERT_INDEX)
        except TSS2_Exception as exc:
            raise translate(exc, what="reading the EK certificate") from exc
        except Exception as exc:  # tpm2_pytss.utils.NoSuchIndex
            raise NotProvisioned("no EK certificate in NV 0x01c00002") from exc
        return _der_prefix(raw)

    def _ek_public(self) -> bytes:
        if self._ek is None:
            raise NotProvisioned("no EK at 0x81010001: provision first")
        try:
            return bytes(self._read_public(self._ek).marshal())
        except TSS2_Exception as exc:
            raise translate(exc, what="reading the EK") from exc


def _der_prefix(raw: bytes) -> bytes:
    """NV areas may be larger than the certificate: keep exactly the outer DER SEQUENCE."""
    if len(raw) < 2 or raw[0] != 0x30:
        raise TpmError("EK certificate NV area does not hold DER")
    length = raw[1]
    if length < 0x80:
        end = 2 + length
    else:
        n = length & 0x7F
        if n == 0 or n > 4 or len(raw) < 2 + n:
            raise TpmError("EK certificate has a bad DER length")
        end = 2 + n + int.from_bytes(raw[2 : 2 + n], "big")
    if end > len(raw):
        raise TpmError("EK certificate is truncated")
    return raw[:end]
