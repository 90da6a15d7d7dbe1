"""Fixtures: a live device service on a fresh swtpm (tests/device_api's fixtures), enrolled and funded."""

from __future__ import annotations

import pytest

from tests.device.center import TestCenter
from tests.device_api.conftest import live, make_live, unlocked  # noqa: F401 - fixtures re-used
from tests.device_api.live import LiveDevice
from tests.device_purchase.shop import Shop, open_shop


@pytest.fixture
def center() -> TestCenter:
    return TestCenter()


@pytest.fixture
def shop(unlocked: tuple[LiveDevice, str], center: TestCenter) -> Shop:  # noqa: F811
    device, token = unlocked
    return open_shop(device, token, center)
