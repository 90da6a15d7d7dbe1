"""Device API fixtures: a live service on a fresh swtpm (the root conftest's `swtpm`), the real center this
directory's tests share (tests/support/center.py: enrollment, credits), the forger for what that center never
signs, and the "no state change" check."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.device_api.live import FakeClock, LiveDevice, make_settings
from tests.support.center import Account, RealCenter, enroll, shared_center
from tests.support.forger import Forger
from tests.support.swtpm import SwtpmInstance, SwtpmTemplate

MakeLive = Callable[..., LiveDevice]


@pytest.fixture(scope="session")
def real_center(
    swtpm_template: SwtpmTemplate, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealCenter]:
    with shared_center(tmp_path_factory.mktemp("device-center"), swtpm_template.ca_bundle) as center:
        yield center


@pytest.fixture(scope="session")
def center_http(real_center: RealCenter) -> Iterator[httpx.Client]:
    with real_center.client() as client:
        yield client


@pytest.fixture
def forger(real_center: RealCenter) -> Forger:
    """Signs with the real center's keys what it never would (expired, another device, altered members)."""
    return Forger.of(real_center)


@pytest.fixture
def make_live(swtpm: SwtpmInstance, tmp_path: Path) -> Iterator[MakeLive]:
    started: list[LiveDevice] = []

    def make(**settings: Any) -> LiveDevice:
        live = LiveDevice(
            make_settings(tmp_path / f"data{len(started)}", swtpm.tcti, **settings), FakeClock()
        )
        started.append(live)
        return live.start()

    yield make
    for live in started:
        live.stop()


@pytest.fixture
def live(make_live: MakeLive) -> LiveDevice:
    """Provisioned, not set up."""
    return make_live()


@pytest.fixture
def unlocked(live: LiveDevice) -> tuple[LiveDevice, str]:
    """Set up and unlocked: (live, token)."""
    live.setup()
    return live, live.unlock()


@pytest.fixture
def account(unlocked: tuple[LiveDevice, str], center_http: httpx.Client) -> Account:
    """`unlocked`, enrolled through the real center: the device as the center knows it."""
    live, token = unlocked
    return enroll(center_http, live.client, token)


@pytest.fixture
def enrolled(unlocked: tuple[LiveDevice, str], account: Account) -> tuple[LiveDevice, str]:
    return unlocked
