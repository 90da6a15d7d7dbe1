"""Device-core fixtures on a real swtpm (the root conftest's `swtpm`/`swtpm_factory`).

Power-cut campaign size: `COFFER_CAMPAIGN=N` (default 200 crash points) — an environment variable, because
`pytest_addoption` only works in the root conftest.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from device_os.core.device import Device
from device_os.settings import DeviceSettings
from tests.device.center import TestCenter
from tests.support.swtpm import SwtpmInstance

PIN = "123456"


@pytest.fixture
def center() -> TestCenter:
    return TestCenter()


@pytest.fixture
def make_device(tmp_path: Path) -> Iterator[Callable[..., Device]]:
    opened: list[Device] = []

    def make(tpm: SwtpmInstance, name: str = "data", **settings: Any) -> Device:
        settings.setdefault("trust_first_center", True)  # the tests' centers are trusted on first use
        s = DeviceSettings(data_dir=tmp_path / name, tcti=tpm.tcti, **settings)
        device = Device.open(s)
        opened.append(device)
        return device

    yield make
    for device in opened:
        with contextlib.suppress(Exception):  # the TPM may have been killed by the test
            device.close()


@pytest.fixture
def ready(swtpm: SwtpmInstance, make_device: Callable[..., Device], center: TestCenter) -> Device:
    """A provisioned, set-up, unlocked and enrolled device."""
    device = make_device(swtpm)
    device.provision()
    device.setup(PIN)
    device.unlock(PIN)
    device.wallet().accept_enrollment(center.enrollment(device.device_id), center.root_jwk)
    return device
