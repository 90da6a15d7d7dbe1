"""The TPM adapter: every TPM command of the device goes through `Tpm` (DESIGN.md "Keys", "TPM discipline").

`Tpm` is the facade; each part of the adapter lives in one module: `worker` (the thread), `context` (the ESAPI
connection, sessions, object loading, the slot plan), `templates` (handles, attributes, templates, PIN rules),
`provisioning`, `keys` (hot KEM and payment keys, sealing, PIN change), `credential` (Certify,
ActivateCredential, the EK), `nv` (the wallet counter).

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
  Wrong PIN -> `TpmWrongPin(tries_left)`; lockout -> `Lockout(retry_after)`.
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

import os

from cryptography.hazmat.primitives.asymmetric import ec
from tpm2_pytss.types import (
    TPM2B_AUTH,
    TPM2B_SENSITIVE_DATA,
    TPMS_SENSITIVE_CREATE,
)

from device_os.tpm.credential import CredentialOps
from device_os.tpm.keys import KemKey, KeyOps, PaymentKey, blob_public_key
from device_os.tpm.provisioning import ProvisioningOps
from device_os.tpm.tcti import Tap
from device_os.tpm.templates import (
    COUNTER_INDEX,
    DA_LOCKOUT_RECOVERY,
    DA_MAX_TRIES,
    DA_RECOVERY_TIME,
    EK_CERT_INDEX,
    EK_HANDLE,
    MAX_NONCE_BYTES,
    MAX_SEALED_BYTES,
    SRK_HANDLE,
    check_pin,
    kem_template,
    payment_template,
    sealed_template,
)
from device_os.tpm.types import DaStatus, KeyBlob, ProvisionedKeys
from device_os.tpm.worker import Worker
from protocol.attestation import CertifyEvidence

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


class Tpm(ProvisioningOps, KeyOps, CredentialOps):
    """The device's TPM. Use `Tpm.open(tcti)`; see device_os/tpm/__init__.py for the API."""

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
        # libtss2 writes its own log lines to stderr (not through Python logging), at ERROR for expected
        # conditions such as a wrong PIN; every failure reaches callers as an exception here. Quiet by
        # default: set TSS2_LOG (e.g. "all+debug") to see them. Read by libtss2 at its first log call.
        os.environ.setdefault("TSS2_LOG", "all+NONE")
        worker = Worker()
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
        return blob_public_key(blob)

    def create_kem_key(self, pin: bytes) -> KeyBlob:
        """A new ECC P-256 ECDH (decrypt) key under the SRK, authValue = PIN (DA-protected)."""
        pin = check_pin(pin)
        return self._run(
            lambda: self._create(kem_template(), TPMS_SENSITIVE_CREATE(userAuth=TPM2B_AUTH(pin)))
        )

    def create_payment_key(self, pin: bytes) -> KeyBlob:
        """A new ECC P-256 ECDSA signing key under the SRK, authValue = PIN (DA-protected)."""
        pin = check_pin(pin)
        return self._run(
            lambda: self._create(payment_template(), TPMS_SENSITIVE_CREATE(userAuth=TPM2B_AUTH(pin)))
        )

    def seal(self, secret: bytes, pin: bytes) -> KeyBlob:
        """Seal `secret` (1..128 bytes) in a KEYEDHASH object under the SRK, authValue = PIN."""
        pin = check_pin(pin)
        if not 0 < len(secret) <= MAX_SEALED_BYTES:
            raise ValueError(f"sealed data must be 1..{MAX_SEALED_BYTES} bytes")
        sensitive = TPMS_SENSITIVE_CREATE(userAuth=TPM2B_AUTH(pin), data=TPM2B_SENSITIVE_DATA(secret))
        return self._run(lambda: self._create(sealed_template(), sensitive))

    def unseal(self, blob: KeyBlob, pin: bytes) -> bytes:
        """TPM2_Unseal with the PIN. Raises TpmWrongPin(tries_left) or Lockout(retry_after)."""
        pin = check_pin(pin)
        return self._run(lambda: self._unseal(blob, pin))

    def change_auth(self, blob: KeyBlob, old_pin: bytes, new_pin: bytes) -> KeyBlob:
        """TPM2_ObjectChangeAuth: the same object (public part) with a new private part under `new_pin`.
        The old blob keeps working with the old PIN: the caller must replace it."""
        old_pin, new_pin = check_pin(old_pin), check_pin(new_pin)
        return self._run(lambda: self._change_auth(blob, old_pin, new_pin))

    def certify(self, ak: KeyBlob, key: KeyBlob, nonce: bytes, pin: bytes | None = None) -> CertifyEvidence:
        """TPM2_Certify of `key` by the attestation key, qualifyingData = `nonce` (<= 32 bytes). A PIN-bound
        key needs its PIN (Certify uses the ADMIN role of the certified object)."""
        if len(nonce) > MAX_NONCE_BYTES:
            raise ValueError(f"nonce must be at most {MAX_NONCE_BYTES} bytes")
        auth = check_pin(pin) if pin is not None else None
        return self._run(lambda: self._certify(ak, key, nonce, auth))

    def activate_credential(self, ak: KeyBlob, credential_blob: bytes, encrypted_secret: bytes) -> bytes:
        """TPM2_ActivateCredential with the AK and the EK (policy session: PolicySecret(endorsement)).
        Inputs are the marshalled TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET of MakeCredential."""
        return self._run(lambda: self._activate(ak, credential_blob, encrypted_secret))

    def load_hot_keys(self, kem: KeyBlob, payment: KeyBlob, pin: bytes) -> tuple[KemKey, PaymentKey]:
        """Load the KEM key then the payment key (both with the PIN as auth) and keep them loaded until
        `unload_hot_keys()`. Their exchange()/sign() then cost exactly one TPM command each."""
        pin = check_pin(pin)
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
