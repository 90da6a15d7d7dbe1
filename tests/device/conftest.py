"""Device-core fixtures on a real swtpm (the root conftest's `swtpm`/`swtpm_factory`).

Power-cut campaign size: `COFFER_CAMPAIGN=N` (default 200 crash points) — an environment variable, because
`pytest_addoption` only works in the root conftest.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from device_os.core.device import Device
from device_os.settings import DeviceSettings
from tests.support.center_services import CenterServices, Enrolled
from tests.support.swtpm import SwtpmInstance, SwtpmTemplate

PIN = "123456"


@dataclass
class CoreCenter:
    """The real center's services in process (tests/support/center_services.py) as the device core's tests
    use them: enroll a `Device` on swtpm (attested), credits from codes it issued, orders for items registered
    under the test's labels (the library is keyed by the center's item ids: `item(label)`)."""

    services: CenterServices
    items: dict[str, str] = field(default_factory=dict)

    def enroll(self, device: Device) -> Enrolled:
        return self.services.enroll(device)

    def credit(self, device_id: str, amount: int = 1000) -> str:
        return self.services.credit(device_id, amount)

    def item(self, label: str, price: int = 100, content: bytes | None = None) -> str:
        if label not in self.items:
            assert content is not None, f"item {label!r} is not registered yet"
            self.items[label] = self.services.add_item(content, title=label, price=price)
        return self.items[label]

    def order(self, device_id: str, label: str, price: int, content: bytes) -> tuple[str, bytes]:
        """A fresh order for the item `label` (registered with `content` at `price` the first time)."""
        return self.services.order(device_id, self.item(label, price, content))

    def open_payment(self, order_id: str, payment: str) -> str:
        return self.services.open_payment(order_id, payment)


@pytest.fixture(scope="session")
def center_services(
    swtpm_template: SwtpmTemplate, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CenterServices]:
    """One center database and key set for the session (every swtpm copy shares the EK and its CA)."""
    with CenterServices(tmp_path_factory.mktemp("core-center"), swtpm_template.ca_bundle) as services:
        yield services


@pytest.fixture
def real(center_services: CenterServices) -> CoreCenter:
    return CoreCenter(center_services)


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
def ready(swtpm: SwtpmInstance, make_device: Callable[..., Device], real: CoreCenter) -> Device:
    """A provisioned, set-up, unlocked device, enrolled by the real center."""
    device = make_device(swtpm)
    device.provision()
    device.setup(PIN)
    device.unlock(PIN)
    real.enroll(device)
    return device
