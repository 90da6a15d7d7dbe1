"""Tamper over HTTP (issue 12, finding 5): a device with a state but no keys answers `device-tampered`, not
500, without spending a TPM try; a counter moved under a commit shows in `/v1/health` at once."""

from __future__ import annotations

import contextlib
import shutil

import pytest

from device_os.tpm import Tpm, TpmError
from tests.device_api.conftest import MakeLive
from tests.device_api.live import FakeClock, LiveDevice, auth
from tests.support.center import Account, RealCenter
from tests.support.swtpm import SwtpmInstance

pytestmark = [pytest.mark.swtpm, pytest.mark.integration]


def _tampered(r) -> None:  # type: ignore[no-untyped-def]
    assert r.status_code == 409, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "urn:coffer:problem:device-tampered"


def test_unlock_without_keys_is_device_tampered(make_live: MakeLive) -> None:
    live = make_live()
    live.setup()
    live.stop()
    shutil.rmtree(live.settings.data_dir / "keys")
    again = LiveDevice(live.settings, FakeClock()).start()
    try:
        health = again.client.get("/v1/health").json()
        assert (health["phase"], health["tampered"]) == ("tampered", True)
        tries = again.failed_tries()
        before = again.snapshot()
        for pin in ("135792", "000000"):
            _tampered(again.client.post("/v1/unlock", json={"pin": pin}))
        assert again.failed_tries() == tries
        assert again.snapshot() == before
    finally:
        again.stop()


def test_counter_moved_under_a_commit_reaches_health(
    enrolled: tuple[LiveDevice, str], account: Account, real_center: RealCenter, swtpm: SwtpmInstance
) -> None:
    live, token = enrolled
    credit = account.prepaid(real_center, 1000)
    with Tpm.open(swtpm.tcti) as other:  # another program on the board moves the wallet counter
        other.counter_increment()
    r = live.client.post("/v1/credits", json={"credit": credit}, headers=auth(token))
    _tampered(r)
    health = live.client.get("/v1/health").json()
    assert (health["phase"], health["tampered"]) == ("tampered", True)
    assert "moved" in health["tamper_reason"]
    _tampered(live.client.get("/v1/wallet", headers=auth(token)))
    with contextlib.suppress(TpmError):  # the other connection flushed the hot keys (swtpm has no RM)
        live.device.lock()
