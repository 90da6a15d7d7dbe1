"""Setup, unlock, lock, PIN change and the token lifecycle on a real swtpm over real HTTP (DESIGN.md flow 2,
"Device API"). After every refused request: no state change (counter, `state` bytes, content listing)."""

from __future__ import annotations

import time

import pytest

from device_os.core.aead import resolve
from device_os.core.device import RAM_PIN_STRIKES
from device_os.tpm import DA_MAX_TRIES
from tests.device_api.conftest import MakeLive
from tests.device_api.live import PIN, LiveDevice, auth

pytestmark = [pytest.mark.swtpm, pytest.mark.integration]
NEW_PIN = "24681357"


def problem(r, slug: str, status: int):  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"] == f"urn:coffer:problem:{slug}"
    assert body["status"] == status
    return body


def test_health_and_identity_before_setup(live: LiveDevice) -> None:
    health = live.client.get("/v1/health").json()
    assert health["phase"] == "not-set-up"
    assert health["tampered"] is False
    assert health["device_id"] == live.device.device_id
    problem(live.client.get("/v1/identity"), "not-set-up", 409)
    problem(live.client.post("/v1/unlock", json={"pin": PIN}), "not-set-up", 409)


def test_setup_once(live: LiveDevice) -> None:
    problem(live.client.post("/v1/setup", json={"pin": "12345"}), "weak-pin", 422)
    problem(live.client.post("/v1/setup", json={"pin": "12345a"}), "weak-pin", 422)
    assert not live.device.store.state_path.exists()
    assert live.client.get("/v1/health").json()["phase"] == "not-set-up"
    r = live.client.post("/v1/setup", json={"pin": PIN})
    assert r.status_code == 201, r.text
    assert r.json() == {"device_id": live.device.device_id, "phase": "locked"}
    before = live.snapshot()
    problem(live.client.post("/v1/setup", json={"pin": PIN}), "already-set-up", 409)
    assert live.snapshot() == before
    identity = live.identity()
    assert identity["device_id"] == live.device.device_id
    assert identity["aead"] == resolve("auto")  # the CPU's AES support decides
    assert identity["software_version"]


def test_unlock_wrong_pin_uses_the_tpm_when_locked(live: LiveDevice) -> None:
    live.setup()
    before = live.snapshot()
    body = problem(live.client.post("/v1/unlock", json={"pin": "000000"}), "wrong-pin", 401)
    assert body["tries_left"] == DA_MAX_TRIES - 1
    assert live.failed_tries() == 1
    body = problem(live.client.post("/v1/unlock", json={"pin": "not digits"}), "wrong-pin", 401)
    assert live.failed_tries() == 1  # judged in software: no TPM try spent
    assert PIN not in live.client.post("/v1/unlock", json={"pin": "999999"}).text
    assert live.snapshot() == before
    token = live.unlock()
    assert live.client.get("/v1/health").json()["phase"] == "unlocked"
    assert live.client.get("/v1/wallet", headers=auth(token)).status_code == 200


def test_unlocked_device_checks_pin_in_ram_and_locks_after_three(unlocked: tuple[LiveDevice, str]) -> None:
    live, first = unlocked
    second = live.unlock()  # already unlocked: checked against RAM, another token
    assert second != first
    for token in (first, second):
        assert live.client.get("/v1/wallet", headers=auth(token)).status_code == 200
    tries = live.failed_tries()
    before = live.snapshot()
    for left in range(RAM_PIN_STRIKES - 1, 0, -1):
        body = problem(live.client.post("/v1/unlock", json={"pin": "000000"}), "wrong-pin", 401)
        assert body["tries_left"] == left
        assert live.client.get("/v1/health").json()["phase"] == "unlocked"
    live.unlock()  # a right PIN resets the run of strikes
    for left in range(RAM_PIN_STRIKES - 1, -1, -1):
        body = problem(live.client.post("/v1/unlock", json={"pin": "000000"}), "wrong-pin", 401)
        assert body["tries_left"] == left
    assert live.client.get("/v1/health").json()["phase"] == "locked"
    assert live.failed_tries() == tries  # never a TPM try
    assert live.snapshot() == before
    for token in (first, second):
        problem(live.client.get("/v1/wallet", headers=auth(token)), "unauthorized", 401)


def test_token_from_before_a_lock_is_refused(unlocked: tuple[LiveDevice, str]) -> None:
    live, old = unlocked
    r = live.client.post("/v1/lock", headers=auth(old))
    assert r.status_code == 204
    assert live.client.get("/v1/health").json()["phase"] == "locked"
    problem(live.client.get("/v1/wallet", headers=auth(old)), "unauthorized", 401)
    new = live.unlock()
    problem(live.client.get("/v1/wallet", headers=auth(old)), "unauthorized", 401)
    problem(live.client.post("/v1/lock", headers=auth(old)), "unauthorized", 401)
    assert live.client.get("/v1/wallet", headers=auth(new)).status_code == 200


def test_idle_auto_lock_ends_tokens(unlocked: tuple[LiveDevice, str]) -> None:
    live, token = unlocked
    timeout = live.settings.auto_lock_seconds
    live.clock.advance(timeout - 1)
    assert live.client.get("/v1/wallet", headers=auth(token)).status_code == 200  # resets the idle timer
    live.clock.advance(timeout - 1)
    assert live.client.get("/v1/wallet", headers=auth(token)).status_code == 200
    live.clock.advance(timeout + 1)
    problem(live.client.get("/v1/wallet", headers=auth(token)), "unauthorized", 401)
    assert live.client.get("/v1/health").json()["phase"] == "locked"
    new = live.unlock()
    problem(live.client.get("/v1/wallet", headers=auth(token)), "unauthorized", 401)
    assert live.client.get("/v1/wallet", headers=auth(new)).status_code == 200


def test_pin_change(unlocked: tuple[LiveDevice, str]) -> None:
    live, token = unlocked
    tries = live.failed_tries()
    before = live.snapshot()
    body = problem(
        live.client.post("/v1/pin", json={"old_pin": "000000", "new_pin": NEW_PIN}, headers=auth(token)),
        "wrong-pin",
        401,
    )
    assert body["tries_left"] == RAM_PIN_STRIKES - 1
    assert live.failed_tries() == tries  # the old PIN is checked against RAM first
    problem(
        live.client.post("/v1/pin", json={"old_pin": PIN, "new_pin": "123"}, headers=auth(token)),
        "weak-pin",
        422,
    )
    assert live.snapshot() == before
    r = live.client.post("/v1/pin", json={"old_pin": PIN, "new_pin": NEW_PIN}, headers=auth(token))
    assert r.status_code == 204, r.text
    assert live.client.get("/v1/wallet", headers=auth(token)).status_code == 200  # the session goes on
    assert live.client.post("/v1/lock", headers=auth(token)).status_code == 204
    problem(live.client.post("/v1/unlock", json={"pin": PIN}), "wrong-pin", 401)
    live.unlock(NEW_PIN)


def test_pin_change_three_wrong_old_pins_lock(unlocked: tuple[LiveDevice, str]) -> None:
    live, token = unlocked
    for left in (2, 1, 0):
        r = live.client.post("/v1/pin", json={"old_pin": "000000", "new_pin": NEW_PIN}, headers=auth(token))
        body = problem(r, "wrong-pin", 401)
        assert body["tries_left"] == left
    assert live.client.get("/v1/health").json()["phase"] == "locked"
    problem(live.client.get("/v1/wallet", headers=auth(token)), "unauthorized", 401)


def test_wrong_pins_while_unlocked_are_one_count(unlocked: tuple[LiveDevice, str]) -> None:
    """Issue 12, code health: a wrong PIN at `/v1/unlock` and a wrong old PIN at `/v1/pin` count in the one
    run of wrong PINs while unlocked (the core's): the third of either kind locks; never a TPM try."""
    live, token = unlocked
    tries = live.failed_tries()
    before = live.snapshot()
    wrong_unlock = {"pin": "000000"}
    wrong_change = {"old_pin": "000000", "new_pin": NEW_PIN}
    body = problem(live.client.post("/v1/unlock", json=wrong_unlock), "wrong-pin", 401)
    assert body["tries_left"] == RAM_PIN_STRIKES - 1
    body = problem(live.client.post("/v1/pin", json=wrong_change, headers=auth(token)), "wrong-pin", 401)
    assert body["tries_left"] == RAM_PIN_STRIKES - 2
    r = live.client.post("/v1/pin", json={"old_pin": PIN, "new_pin": "123"}, headers=auth(token))
    problem(r, "weak-pin", 422)  # the right old PIN ends the run (a weak new one changes nothing)
    body = problem(live.client.post("/v1/unlock", json=wrong_unlock), "wrong-pin", 401)
    assert body["tries_left"] == RAM_PIN_STRIKES - 1
    body = problem(live.client.post("/v1/pin", json=wrong_change, headers=auth(token)), "wrong-pin", 401)
    assert body["tries_left"] == RAM_PIN_STRIKES - 2
    body = problem(live.client.post("/v1/unlock", json=wrong_unlock), "wrong-pin", 401)
    assert body["tries_left"] == 0
    assert live.client.get("/v1/health").json()["phase"] == "locked"
    problem(live.client.get("/v1/wallet", headers=auth(token)), "unauthorized", 401)
    assert live.failed_tries() == tries
    assert live.snapshot() == before


def test_tpm_lockout_is_423_with_retry_after(live: LiveDevice) -> None:
    live.setup()
    before = live.snapshot()
    for left in range(DA_MAX_TRIES - 1, -1, -1):
        body = problem(live.client.post("/v1/unlock", json={"pin": "000000"}), "wrong-pin", 401)
        assert body["tries_left"] == left
    r = live.client.post("/v1/unlock", json={"pin": PIN})  # even the right PIN
    body = problem(r, "pin-lockout", 423)
    assert int(r.headers["retry-after"]) > 0
    assert body["retry_after"] == int(r.headers["retry-after"])
    assert live.snapshot() == before


def test_tampered_state_is_shown_and_refused(unlocked: tuple[LiveDevice, str]) -> None:
    live, token = unlocked
    assert live.client.post("/v1/lock", headers=auth(token)).status_code == 204
    path = live.device.store.state_path
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x01  # the body no longer authenticates: found at the first unlock of this process
    path.write_bytes(bytes(raw))
    problem(live.client.post("/v1/unlock", json={"pin": PIN}), "device-tampered", 409)
    health = live.client.get("/v1/health").json()
    assert health["tampered"] is True
    assert health["phase"] == "tampered"
    for r in (
        live.client.get("/v1/wallet"),
        live.client.get("/v1/wallet", headers=auth(token)),
        live.client.post("/v1/credits", json={"credit": "a.b.c"}, headers=auth(token)),
    ):
        problem(r, "device-tampered", 409)


def test_background_timer_locks_an_idle_device(make_live: MakeLive) -> None:
    live = make_live(auto_lock_seconds=5)  # the timer looks every 0.5 s
    live.setup()
    token = live.unlock()
    live.clock.advance(6)
    deadline = time.monotonic() + 30  # a bound for a slow machine, not a timing assertion
    while live.client.get("/v1/health").json()["phase"] != "locked":  # health itself never locks
        assert time.monotonic() < deadline, "the idle timer did not lock the device"
        time.sleep(0.1)
    problem(live.client.get("/v1/wallet", headers=auth(token)), "unauthorized", 401)
