"""Fixtures: a live device service on a fresh swtpm (tests/device_api's fixtures), enrolled through the real
center this session shares (tests/support/center.py) and funded with a code it issued."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.device_api.conftest import (  # noqa: F401 - fixtures re-used
    center_http,
    live,
    make_live,
    real_center,
    unlocked,
)
from tests.device_api.live import LiveDevice
from tests.device_purchase.shop import Shop, open_shop
from tests.support.center import RealCenter


@pytest.fixture
def shop(
    unlocked: tuple[LiveDevice, str],  # noqa: F811
    real_center: RealCenter,  # noqa: F811
    center_http: httpx.Client,  # noqa: F811
) -> Shop:
    device, token = unlocked
    return open_shop(device, token, real_center, center_http)


@pytest.fixture
def make_shop(
    make_live: Callable[..., LiveDevice],  # noqa: F811
    real_center: RealCenter,  # noqa: F811
    center_http: httpx.Client,  # noqa: F811
) -> Callable[..., Shop]:
    """A shop on a device made with these settings (e.g. `aead="chacha20-poly1305"`: the center's orders
    then use the AEAD the device declared at enrollment)."""

    def make(**settings: Any) -> Shop:
        device = make_live(**settings)
        device.setup()
        return open_shop(device, device.unlock(), real_center, center_http)

    return make
