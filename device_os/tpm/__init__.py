"""The TPM adapter: the only code in Coffer that imports tpm2_pytss (DESIGN.md "Keys", "TPM discipline").

    from device_os.tpm import (Tpm, KeyBlob, ProvisionedKeys, CertifyEvidence, DaStatus, KemKey, PaymentKey,
                               TpmError, TpmUnavailable, TpmNotProvisioned, ProvisioningConflict, BadBlob,
                               KeyNotLoaded, TpmWrongPin, Lockout)

    tpm = Tpm.open(tcti, *, counter_index=COUNTER_INDEX, encrypt_sessions=True)
                                         # tcti: "swtpm:host=127.0.0.1,port=P" | "swtpm:path=S" |
                                         # "device:/dev/tpmrm0"; flushes leftover transient objects and
                                         # sessions; one worker thread serializes every call (safe from
                                         # any thread, blocking); PINs and secrets travel in a salted,
                                         # parameter-encrypted session unless encrypt_sessions=False
    tpm.close()                          # flushes hot keys, TPM2_Shutdown(STATE); idempotent; also `with`
    tpm.commands -> int                  # TPM commands sent, counted at the TCTI (CountingTcti)
    tpm.retries -> int                   # resubmissions the TPM asked for (TPM_RC_RETRY), apart
    tpm.command_times(clear=False) -> list[tuple[str, float]]   # per-command seconds at the TCTI
    tpm.recent_commands() -> list[str]   # the last commands, e.g. ["ECDH_ZGen", "Sign", "NV_Increment"]
    tpm.provision(existing: ProvisionedKeys | None = None) -> ProvisionedKeys
        # idempotent first boot: SRK persisted at 0x81000001, RSA-2048 EK persisted at 0x81010001
        # (created from the TCG template if absent; certificate in NV 0x01c00002), the AK blob
        # (an existing one verified to load and kept), wallet counter at NV 0x0100c0fe defined and
        # incremented once, DA parameters (10 tries / 600 s / 86400 s), the DA counter reset, then a
        # random 32-byte lockout auth, forgotten.
    tpm.ek_certificate() -> bytes        # DER
    tpm.ek_public() -> bytes             # the EK's TPM2B_PUBLIC (the center's MakeCredential input)
    tpm.public_key(blob) -> EllipticCurvePublicKey              # parsed in software, no TPM command
    tpm.create_kem_key(pin) -> KeyBlob                          # P-256 ECDH, authValue = PIN, DA-protected
    tpm.create_payment_key(pin) -> KeyBlob                      # P-256 ECDSA, authValue = PIN, DA-protected
    tpm.seal(secret, pin) -> KeyBlob                            # KEYEDHASH sealed object (1..128 bytes)
    tpm.unseal(blob, pin) -> bytes                           # TpmWrongPin(tries_left) | Lockout(retry_after)
    tpm.change_auth(blob, old_pin, new_pin) -> KeyBlob          # TPM2_ObjectChangeAuth (same public part)
    tpm.certify(ak, key, nonce, pin=None) -> CertifyEvidence    # nonce <= 32 bytes; pin for a PIN-bound key
    tpm.activate_credential(ak, credential_blob, encrypted_secret) -> bytes
    kem, payer = tpm.load_hot_keys(kem_blob, payment_blob, pin) # both PIN-bound; loaded until unload / close
                                         # (TpmWrongPin / Lockout surface at the first exchange() / sign())
        kem.public_key(); kem.exchange(ec.ECDH(), peer) -> 32-byte x   # exactly one TPM2_ECDH_ZGen
        payer.public_key(); payer.sign(data) -> 64-byte r||s          # exactly one TPM2_Sign (SHA-256 here)
    tpm.unload_hot_keys()
    tpm.counter_read() -> int            # one TPM2_NV_Read
    tpm.counter_increment() -> int       # one TPM2_NV_Increment once the value is known; the new value
    tpm.da_status() -> DaStatus(failed_tries, max_tries, recovery_time, lockout_recovery, in_lockout,
                                lockout_auth_set; .tries_left)

A PIN is 1..32 bytes not ending in a zero byte. `KeyBlob` = marshalled TPM2B_PUBLIC || TPM2B_PRIVATE
(`to_bytes`/`from_bytes`, `to_json`/`from_json`); `ProvisionedKeys(ak)` likewise. `CertifyEvidence`
is `protocol.attestation.CertifyEvidence` (the center verifies it with `protocol.attestation.verify_certify`).
Errors: see device_os/tpm/errors.py (TpmUnavailable after the link broke or the TPM restarted: the next
call reconnects, flushes leftovers and reloads hot keys on their next use). The purchase hot path is
`kem.exchange`, `payer.sign`, `tpm.counter_increment()`, `tpm.counter_read()`: four TPM commands (ECDH_ZGen,
Sign, NV_Increment, and the NV_Read that checks the counter; docs/device-purchases.md).
"""

from __future__ import annotations

from device_os.tpm.adapter import Tpm
from device_os.tpm.errors import (
    BadBlob,
    KeyNotLoaded,
    Lockout,
    ProvisioningConflict,
    TpmError,
    TpmNotProvisioned,
    TpmUnavailable,
    TpmWrongPin,
)
from device_os.tpm.keys import KemKey, PaymentKey
from device_os.tpm.templates import (
    COUNTER_INDEX,
    DA_LOCKOUT_RECOVERY,
    DA_MAX_TRIES,
    DA_RECOVERY_TIME,
    EK_CERT_INDEX,
    EK_HANDLE,
    SRK_HANDLE,
)
from device_os.tpm.types import DaStatus, KeyBlob, ProvisionedKeys
from protocol.attestation import CertifyEvidence

__all__ = [
    "COUNTER_INDEX",
    "DA_LOCKOUT_RECOVERY",
    "DA_MAX_TRIES",
    "DA_RECOVERY_TIME",
    "EK_CERT_INDEX",
    "EK_HANDLE",
    "SRK_HANDLE",
    "BadBlob",
    "CertifyEvidence",
    "DaStatus",
    "KemKey",
    "KeyBlob",
    "KeyNotLoaded",
    "Lockout",
    "PaymentKey",
    "ProvisionedKeys",
    "ProvisioningConflict",
    "Tpm",
    "TpmError",
    "TpmNotProvisioned",
    "TpmUnavailable",
    "TpmWrongPin",
]
