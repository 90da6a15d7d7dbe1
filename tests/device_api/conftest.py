"""Device API fixtures: a live service on a fresh swtpm (the root conftest's `swtpm`), the center played with
`protocol`, and the "no state change" check."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.device_api.center import PlayCenter
from tests.device_api.live import FakeClock, LiveDevice, auth, make_settings
from tests.support.swtpm import SwtpmInstance

MakeLive = Callable[..., LiveDevice]


@pytest.fixture
def center() -> PlayCenter:
    return PlayCenter()


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
def enrolled(unlocked: tuple[LiveDevice, str], center: PlayCenter) -> tuple[LiveDevice, str]:
    live, token = unlocked
    device_id = live.device.device_id
    r = live.client.post("/v1/enrollment", json=center.enrollment_request(device_id), headers=auth(token))
    assert r.status_code == 200, r.text
    return live, token
