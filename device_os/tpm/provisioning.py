"""First boot, idempotent (DESIGN.md flow 1): SRK, EK, attestation key, wallet counter, DA parameters and a
forgotten lockout authorization.
"""

from __future__ import annotations

import logging
import secrets
from typing import TypeVar

from tpm2_pytss import TSS2_Exception
from tpm2_pytss.constants import (
    ESYS_TR,
    TPMA_SESSION,
)
from tpm2_pytss.types import (
    TPM2B_AUTH,
    TPM2B_SENSITIVE_CREATE,
    TPMS_SENSITIVE_CREATE,
)
from tpm2_pytss.utils import NVReadEK, create_ek_template

from device_os.tpm.errors import (
    ProvisioningConflict,
    translate,
)
from device_os.tpm.nv import CounterOps
from device_os.tpm.templates import (
    DA_LOCKOUT_RECOVERY,
    DA_MAX_TRIES,
    DA_RECOVERY_TIME,
    EK_HANDLE,
    SRK_HANDLE,
    ak_template,
    srk_template,
)
from device_os.tpm.types import ProvisionedKeys

T = TypeVar("T")
log = logging.getLogger(__name__)


class ProvisioningOps(CounterOps):
    """Worker-side: provisioning."""

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
