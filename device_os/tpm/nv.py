"""The wallet counter: an NV counter index (defined at provisioning, read, incremented; never ORDERLY)."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from tpm2_pytss import TSS2_Exception
from tpm2_pytss.constants import (
    ESYS_TR,
    TPM2_ALG,
    TPMA_NV,
)
from tpm2_pytss.types import (
    TPM2B_AUTH,
    TPM2B_NV_PUBLIC,
    TPMS_NV_PUBLIC,
)

from device_os.tpm.context import TpmContext
from device_os.tpm.errors import (
    ProvisioningConflict,
    TpmNotProvisioned,
    translate,
)
from device_os.tpm.templates import COUNTER_ATTRS

T = TypeVar("T")
log = logging.getLogger(__name__)


class CounterOps(TpmContext):
    """Worker-side: the wallet counter."""

    def _require_counter(self) -> Any:
        if self._counter is None:
            raise TpmNotProvisioned(f"no wallet counter at 0x{self._counter_index:08x}: provision first")
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
