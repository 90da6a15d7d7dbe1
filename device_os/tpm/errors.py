"""Errors raised by the TPM adapter, one tree (STYLE.md 8). TSS2 return codes are translated here only.

    TpmError                  any TPM failure not listed below (.rc: the TSS2 return code, 0 if none)
    ├── TpmUnavailable        the TCTI cannot reach the TPM (swtpm down, /dev/tpmrm0 missing, I/O error)
    │                         or the TPM restarted under us; the adapter reconnects at the next call
    ├── TpmNotProvisioned     the storage root key, EK or NV counter is missing: run `provision()` first
    ├── ProvisioningConflict  a handle or NV index we need holds something else, or the lockout authorization
    │                         was set by someone else with other dictionary-attack parameters
    ├── BadBlob               a key blob is malformed or does not belong under this TPM's storage root key
    ├── KeyNotLoaded          a hot key was used after unload_hot_keys() or close()
    ├── TpmWrongPin           (.tries_left) the TPM refused the PIN and counted a failure
    └── Lockout               (.retry_after seconds) dictionary-attack lockout: every PIN is refused until
                              then, even the right one

`translate(exc)` maps a `TSS2_Exception`; callers write `raise translate(exc) from exc`. The names carry `Tpm`
where the device core has its own error for the same idea (`device_os.errors.WrongPin`, `NotProvisioned`): the
core translates these; the device API answers both alike (wrong-pin 401; service-unavailable 503).
"""

from __future__ import annotations

# TPM 2.0 Part 2 §6.6 response codes (format-one codes without their handle/parameter/session bits).
RC_FMT1 = 0x080
RC_AUTH_FAIL = RC_FMT1 + 0x00E
RC_BAD_AUTH = RC_FMT1 + 0x022
RC_INTEGRITY = RC_FMT1 + 0x01F
RC_SIZE = RC_FMT1 + 0x015
RC_KEY_SIZE = RC_FMT1 + 0x007
RC_HANDLE = RC_FMT1 + 0x00B
RC_ECC_POINT = RC_FMT1 + 0x027
RC_LOCKOUT = 0x921
RC_NV_UNINITIALIZED = 0x14A
RC_OBJECT_MEMORY = 0x902
RC_REFERENCE_H0 = 0x910  # .. 0x916: a handle names a transient object or session that is not loaded
RC_REFERENCE_S6 = 0x91E
TSS2_RC_LAYER_MASK = 0xFF << 16
TSS2_TCTI_RC_LAYER = 10 << 16
TSS2_ESYS_RC_LAYER = 7 << 16
# TSS2 base codes meaning "the conversation with the TPM broke" (tss2_common.h): the ESAPI context is then
# out of sequence and must be rebuilt: BAD_SEQUENCE, NO_CONNECTION, IO_ERROR, MALFORMED_RESPONSE,
# INSUFFICIENT_RESPONSE.
_LINK_FAILURES = {0x7, 0x8, 0xA, 0x11, 0x13}


class TpmError(Exception):
    """Base of every error raised by the TPM adapter."""

    def __init__(self, message: str, *, rc: int = 0) -> None:
        super().__init__(message)
        self.rc = rc


class TpmUnavailable(TpmError):
    """The TPM cannot be reached through the TCTI."""


class TpmNotProvisioned(TpmError):
    """The TPM has not been provisioned (storage root key, EK or wallet counter missing)."""


class ProvisioningConflict(TpmError):
    """A persistent handle, NV index or the lockout authorization is owned by something else."""


class BadBlob(TpmError):
    """A key blob is malformed or was not made under this TPM's storage root key."""


class KeyNotLoaded(TpmError):
    """A hot key object was used after it was unloaded."""


class TpmWrongPin(TpmError):
    """The TPM refused the PIN; `tries_left` more failures are allowed before lockout."""

    def __init__(self, tries_left: int, *, rc: int = RC_AUTH_FAIL) -> None:
        super().__init__(f"wrong PIN ({tries_left} tries left)", rc=rc)
        self.tries_left = tries_left


class Lockout(TpmError):
    """Dictionary-attack lockout: every PIN is refused for `retry_after` seconds (an upper bound: the TPM
    restores one try per recovery interval of powered-on time and does not report the time already spent)."""

    def __init__(self, retry_after: int, *, rc: int = RC_LOCKOUT) -> None:
        super().__init__(f"TPM dictionary-attack lockout; retry after {retry_after} s", rc=rc)
        self.retry_after = retry_after


def base_code(rc: int) -> int:
    """The TPM response code without the layer, handle, parameter and session bits."""
    code = rc & 0xFFFF
    if code & RC_FMT1:
        return RC_FMT1 + (code & 0x3F)
    return code


def is_auth_failure(rc: int) -> bool:
    """A wrong authValue on a DA-protected object (AUTH_FAIL) or on any object (BAD_AUTH)."""
    return (rc & TSS2_RC_LAYER_MASK) == 0 and base_code(rc) in (RC_AUTH_FAIL, RC_BAD_AUTH)


def is_lockout(rc: int) -> bool:
    return (rc & TSS2_RC_LAYER_MASK) == 0 and base_code(rc) == RC_LOCKOUT


def translate(exc: BaseException, *, what: str = "TPM command") -> TpmError:
    """Map a TSS2_Exception (or a TCTI-level failure) to this tree. PIN errors need the DA state and are
    built by the adapter (`TpmWrongPin`, `Lockout`); here they come out as plain `TpmError` with their rc."""
    rc = int(getattr(exc, "rc", 0) or 0)
    if rc == 0:
        return TpmError(f"{what} failed: {exc}")
    layer = rc & TSS2_RC_LAYER_MASK
    if layer == TSS2_TCTI_RC_LAYER or (layer == TSS2_ESYS_RC_LAYER and rc & 0xFFFF in _LINK_FAILURES):
        return TpmUnavailable(f"{what}: TPM unreachable ({exc})", rc=rc)
    if layer == 0:
        code = base_code(rc)
        if code in (RC_INTEGRITY, RC_SIZE, RC_KEY_SIZE):
            return BadBlob(f"{what}: key blob rejected by the TPM ({exc})", rc=rc)
        if RC_REFERENCE_H0 <= code <= RC_REFERENCE_S6:
            # Our transient objects or sessions vanished: the TPM restarted under us (swtpm killed and
            # started again; no power cut on a board without the host going down too).
            return TpmUnavailable(f"{what}: the TPM lost its loaded objects (restarted?) ({exc})", rc=rc)
        if code == RC_OBJECT_MEMORY:
            return TpmError(f"{what}: out of transient object slots ({exc})", rc=rc)
    return TpmError(f"{what} failed: {exc}", rc=rc)
