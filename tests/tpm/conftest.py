"""Fixtures for the TPM adapter tests: an opened, provisioned `Tpm` on a fresh swtpm."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from device_os.tpm import ProvisionedKeys, Tpm, TpmError
from tests.support.swtpm import SwtpmInstance

PIN = b"246810"


@dataclass
class Provisioned:
    swtpm: SwtpmInstance
    tpm: Tpm
    keys: ProvisionedKeys

    def reopen(self) -> Tpm:
        """Close the adapter (orderly) and open a new one, as a restarted device process would."""
        with contextlib.suppress(TpmError):
            self.tpm.close()
        self.tpm = Tpm.open(self.swtpm.tcti)
        return self.tpm


@pytest.fixture
def provisioned(swtpm: SwtpmInstance) -> Iterator[Provisioned]:
    tpm = Tpm.open(swtpm.tcti)
    state = Provisioned(swtpm, tpm, tpm.provision(None))
    yield state
    with contextlib.suppress(TpmError):
        state.tpm.close()
