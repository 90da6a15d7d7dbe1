"""Fixtures for the TPM adapter tests: an opened, provisioned `Tpm` on a fresh swtpm; a PIN-bound KEM key."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from device_os.tpm import KeyBlob, ProvisionedKeys, Tpm, TpmError
from tests.support.swtpm import SwtpmInstance

PIN = b"246810"


@dataclass
class Provisioned:
    swtpm: SwtpmInstance
    tpm: Tpm
    keys: ProvisionedKeys
    kem: KeyBlob  # the KEM key as setup makes it: authValue = PIN

    def reopen(self) -> Tpm:
        """Close the adapter (orderly) and open a new one, as a restarted device process would."""
        with contextlib.suppress(TpmError):
            self.tpm.close()
        self.tpm = Tpm.open(self.swtpm.tcti)
        return self.tpm


@pytest.fixture
def provisioned(swtpm: SwtpmInstance) -> Iterator[Provisioned]:
    tpm = Tpm.open(swtpm.tcti)
    keys = tpm.provision(None)
    state = Provisioned(swtpm, tpm, keys, tpm.create_kem_key(PIN))
    yield state
    with contextlib.suppress(TpmError):
        state.tpm.close()
