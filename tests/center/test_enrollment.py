"""Enrollment against the real device service on swtpm (its identity, its TPM2_ActivateCredential), the center
in process: EK chain against swtpm's local CA, Certify evidence, credential activation, key binding, tokens,
the welcome credit once per EK. Every refusal leaves no device row and no ledger change."""

from __future__ import annotations

import base64
import copy
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from center.db import tx
from center.db.commerce import Device, EnrollmentChallenge, WelcomeGrant
from center.services.catalog import CatalogService
from center.services.enrollment import MAX_OPEN
from center.settings import CenterSettings
from protocol.b64 import b64url_decode, b64url_encode
from tests.center.commerce import Center, problem
from tests.device_api.live import FakeClock, LiveDevice, auth, make_settings, set_up_device
from tests.support.swtpm import SwtpmInstance

pytestmark = [pytest.mark.swtpm, pytest.mark.integration]
WELCOME = 1000


@pytest.fixture
def device(swtpm: SwtpmInstance, tmp_path: Path) -> Iterator[LiveDevice]:
    with set_up_device(tmp_path / "device", swtpm.tcti) as live:
        yield live


@pytest.fixture
def center(make_settings: Any, swtpm: SwtpmInstance, catalog: CatalogService) -> Center:
    del catalog  # migrated
    settings: CenterSettings = make_settings(ek_ca=(swtpm.ca_bundle,), welcome_credit=WELCOME)
    return Center(settings)


def device_rows(center: Center) -> int:
    with tx.read(center.commerce.sessions) as session:
        return session.scalar(select(func.count()).select_from(Device)) or 0


def enroll(center: Center, live: LiveDevice, token: str, identity: dict[str, Any] | None = None) -> Any:
    """Both round trips, the device answering; returns the center's final response."""
    identity = identity or live.identity()
    r = center.client.request("POST", "/v1/devices", json=identity)
    assert r.status_code == 201, r.text
    challenge = r.json()
    secret = live.client.post(
        "/v1/activate",
        json={
            "credential_blob": challenge["credential_blob"],
            "encrypted_secret": challenge["encrypted_secret"],
        },
        headers=auth(token),
    )
    assert secret.status_code == 200, secret.text
    return center.client.request(
        "POST",
        f"/v1/devices/{identity['device_id']}/activate",
        json={"challenge_id": challenge["challenge_id"], "secret": secret.json()["secret"]},
    )


def test_enrollment_the_device_accepts(center: Center, device: LiveDevice) -> None:
    token = device.unlock()
    r = enroll(center, device, token)
    assert r.status_code == 200, r.text
    answer = r.json()
    accepted = device.client.post(
        "/v1/enrollment",
        json={"enrollment": answer["enrollment"], "root_jwk": answer["root_jwk"]},
        headers=auth(token),
    )
    assert accepted.status_code == 200, accepted.text
    credit = device.client.post("/v1/credits", json={"credit": answer["welcome_credit"]}, headers=auth(token))
    assert credit.status_code == 200, credit.text
    wallet = device.client.get("/v1/wallet", headers=auth(token)).json()
    assert wallet["purses"]["prepaid"] == {"JPY": WELCOME}
    device_id = answer["device_id"]
    assert center.balance(f"wallet:{device_id}:JPY") == WELCOME
    status = center.client.get(
        "/v1/orders/ord_x", headers={"Authorization": f"Bearer {answer['device_token']}"}
    )
    problem(status, "not-found", 404)  # the token authenticates

    # re-enrollment with the same keys: idempotent, a fresh token, the same welcome credit, no new money
    again = enroll(center, device, token)
    assert again.status_code == 200, again.text
    assert again.json()["device_token"] != answer["device_token"]
    assert again.json()["welcome_credit"] == answer["welcome_credit"]
    old = center.client.get("/v1/orders/ord_x", headers={"Authorization": f"Bearer {answer['device_token']}"})
    problem(old, "unauthorized", 401)
    assert center.balance(f"wallet:{device_id}:JPY") == WELCOME
    with tx.read(center.commerce.sessions) as session:
        assert session.scalar(select(func.count()).select_from(WelcomeGrant)) == 1
    assert center.report()["checks"]["ok"]


def _flip(text: str, at: int) -> str:
    raw = bytearray(b64url_decode(text))
    raw[at % len(raw)] ^= 0x01
    return b64url_encode(bytes(raw))


def _forged_ek_certificate(pem: str) -> str:
    lines = pem.strip().splitlines()
    der = bytearray(base64.b64decode("".join(lines[1:-1])))
    der[-10] ^= 0x01  # inside the signature
    body = base64.b64encode(bytes(der)).decode()
    return "\n".join([lines[0], *(body[i : i + 64] for i in range(0, len(body), 64)), lines[-1]]) + "\n"


def test_forged_evidence_is_refused_with_no_device_row(center: Center, device: LiveDevice) -> None:
    token = device.unlock()
    identity = device.identity()
    forgeries: list[dict[str, Any]] = []
    for mutate in (
        lambda i: i.update(ek_certificate=_forged_ek_certificate(i["ek_certificate"])),
        lambda i: i.update(ek_public=_flip(i["ek_public"], 40)),
        lambda i: i["certify"]["kem"].update(signature=_flip(i["certify"]["kem"]["signature"], 5)),
        lambda i: i["certify"]["payment"].update(attest=_flip(i["certify"]["payment"]["attest"], 30)),
        lambda i: i.update(payment_jwk=i["kem_jwk"]),
        lambda i: i.update(certify_nonce=b64url_encode(b"another nonce")),
        lambda i: i.update(device_id="dev_" + "a" * 32),
    ):
        forged = copy.deepcopy(identity)
        mutate(forged)
        forgeries.append(forged)
    for forged in forgeries:
        r = center.client.request("POST", "/v1/devices", json=forged)
        assert r.status_code in (409, 422), r.text
        assert r.headers["content-type"].startswith("application/problem+json")
    # a wrong activation answer
    r = center.client.request("POST", "/v1/devices", json=identity)
    challenge = r.json()
    bad = {"challenge_id": challenge["challenge_id"], "secret": b64url_encode(b"\x00" * 32)}
    problem(
        center.client.request("POST", f"/v1/devices/{identity['device_id']}/activate", json=bad),
        "attestation-failed",
        422,
    )
    other = {"challenge_id": "c" * 32, "secret": b64url_encode(b"\x00" * 32)}
    problem(
        center.client.request("POST", f"/v1/devices/{identity['device_id']}/activate", json=other),
        "attestation-failed",
        422,
    )
    assert device_rows(center) == 0
    assert center.ledger_state() == (0, 0)
    # without a trusted EK CA the genuine device is refused too
    untrusting = Center(center.commerce.settings.model_copy(update={"ek_ca": ()}))
    problem(untrusting.client.request("POST", "/v1/devices", json=identity), "attestation-failed", 422)
    # ... unless unattested enrollment is allowed (the EK chain only; Certify is still checked)
    lax = Center(center.commerce.settings.model_copy(update={"ek_ca": (), "allow_unattested": True}))
    forged = copy.deepcopy(identity)
    forged["certify"]["kem"]["signature"] = _flip(forged["certify"]["kem"]["signature"], 5)
    problem(lax.client.request("POST", "/v1/devices", json=forged), "attestation-failed", 422)
    assert enroll(lax, device, token).status_code == 200


def test_a_reflashed_board_cannot_rebind_until_reset(
    center: Center, device: LiveDevice, swtpm: SwtpmInstance, tmp_path: Path
) -> None:
    token = device.unlock()
    first = enroll(center, device, token)
    assert first.status_code == 200
    device_id = first.json()["device_id"]
    # reflash: the same TPM and attestation key (same device_id), a new payment key from a new setup
    device.stop()
    data = tmp_path / "device"
    for name in ("keys", "state", "content"):
        path = data / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    reflashed = LiveDevice(make_settings(data, swtpm.tcti), FakeClock()).start()
    try:
        reflashed.setup()
        token = reflashed.unlock()
        identity = reflashed.identity()
        assert identity["device_id"] == device_id
        r = center.client.request("POST", "/v1/devices", json=identity)
        problem(r, "binding-conflict", 409)
        center.app.state.center.admin.reset(device_id)
        again = enroll(center, reflashed, token)
        assert again.status_code == 200, again.text
        assert (
            again.json()["welcome_credit"] is None
            or again.json()["welcome_credit"] == first.json()["welcome_credit"]
        )
        assert center.balance(f"wallet:{device_id}:JPY") == WELCOME  # reset moved no money, granted none
    finally:
        reflashed.stop()


def test_a_second_device_on_the_same_tpm_gets_no_second_welcome_credit(
    center: Center, device: LiveDevice, swtpm: SwtpmInstance, tmp_path: Path
) -> None:
    token = device.unlock()
    first = enroll(center, device, token)
    assert first.status_code == 200
    assert first.json()["welcome_credit"] is not None
    device.stop()  # one device service per TPM at a time
    other = LiveDevice(make_settings(tmp_path / "other", swtpm.tcti), FakeClock()).start()
    try:
        other.setup()
        identity = other.identity()
        assert identity["device_id"] != first.json()["device_id"]  # a new attestation key, the same EK
        second = enroll(center, other, other.unlock(), identity)
        assert second.status_code == 200, second.text
        assert second.json()["welcome_credit"] is None
        assert center.balance(f"wallet:{identity['device_id']}:JPY") == 0
        assert center.balance(f"wallet:{first.json()['device_id']}:JPY") == WELCOME
        assert center.report()["checks"]["ok"]
    finally:
        other.stop()


def test_replayed_identities_keep_few_open_challenges(center: Center, device: LiveDevice) -> None:
    token = device.unlock()
    identity = device.identity()
    for _ in range(10):  # the identity is public: anyone may replay it
        assert center.client.request("POST", "/v1/devices", json=identity).status_code == 201
    with tx.read(center.commerce.sessions) as session:
        assert session.scalar(select(func.count()).select_from(EnrollmentChallenge)) == MAX_OPEN
    assert enroll(center, device, token, identity).status_code == 200  # the newest still activates
