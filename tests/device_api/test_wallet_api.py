"""Credits, wallet and statement over HTTP (DESIGN.md flows 6, 7): each credit (redeemed at the real center)
once, other devices' credits and forgeries (the forger) refused with no state change."""

from __future__ import annotations

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from protocol import jws
from protocol.keys import public_key_from_pem
from protocol.messages import Statement
from tests.device_api.live import LiveDevice, auth
from tests.support.center import Account, RealCenter, attest, bearer, ok
from tests.support.forger import DAY, Forger

pytestmark = [pytest.mark.swtpm, pytest.mark.integration]


def _credit(live: LiveDevice, token: str, credit: str):  # type: ignore[no-untyped-def]
    return live.client.post("/v1/credits", json={"credit": credit}, headers=auth(token))


def _refused(r, slug: str, status: int) -> None:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == f"urn:coffer:problem:{slug}"


def test_credit_once_then_replay_refused(
    enrolled: tuple[LiveDevice, str], account: Account, real_center: RealCenter
) -> None:
    live, token = enrolled
    credit = account.prepaid(real_center, 1500)
    r = _credit(live, token, credit)
    assert r.status_code == 200, r.text
    assert r.json()["kind"] == "prepaid"
    wallet = live.client.get("/v1/wallet", headers=auth(token)).json()
    assert wallet["purses"]["prepaid"] == {"JPY": 1500}
    assert wallet["counter"] == r.json()["counter"] == live.device.tpm.counter_read()
    before = live.snapshot()
    _refused(_credit(live, token, credit), "credit-already-applied", 409)
    assert live.snapshot() == before
    assert live.client.get("/v1/wallet", headers=auth(token)).json()["purses"]["prepaid"] == {"JPY": 1500}


def test_foreign_and_forged_credits_refused(
    enrolled: tuple[LiveDevice, str], forger: Forger, account: Account, real_center: RealCenter
) -> None:
    live, token = enrolled
    device_id = live.device.device_id
    before = live.snapshot()
    _refused(_credit(live, token, forger.credit("dev_" + "b" * 32)), "wrong-device", 422)
    forged = forger.credit(device_id, signer=ec.generate_private_key(ec.SECP256R1()))
    _refused(_credit(live, token, forged), "invalid-signature", 422)
    now = forger.now
    expired = forger.credit(device_id, iat=now - 10 * DAY, exp=now - DAY)
    _refused(_credit(live, token, expired), "message-expired", 422)
    _refused(_credit(live, token, "a.b.c"), "invalid-signature", 422)
    tampered = account.prepaid(real_center, 1000)  # a real credit, its signature altered on the way
    head, payload, sig = tampered.split(".")
    _refused(_credit(live, token, f"{head}.{payload}.{sig[:-2]}AA"), "invalid-signature", 422)
    assert live.snapshot() == before
    assert live.client.get("/v1/wallet", headers=auth(token)).json()["purses"]["prepaid"] == {}


def test_credit_before_enrollment(
    unlocked: tuple[LiveDevice, str], real_center: RealCenter, center_http: httpx.Client
) -> None:
    """The center enrolled the device, which never received its enrollment: the real credit is refused."""
    live, token = unlocked
    answer = attest(center_http, live.client, token)
    code = real_center.issue_code(answer["device_id"], 1000)
    redeemed = center_http.post(
        "/v1/credits/redeem",
        json={"code": code, "device_id": answer["device_id"]},
        headers=bearer(answer["device_token"]),
    )
    before = live.snapshot()
    _refused(_credit(live, token, ok(redeemed)["credit"]), "not-enrolled", 409)
    assert live.snapshot() == before


def test_statement_signed_in_the_tpm(
    enrolled: tuple[LiveDevice, str], account: Account, real_center: RealCenter
) -> None:
    live, token = enrolled
    assert _credit(live, token, account.prepaid(real_center, 700)).status_code == 200
    nonce = "center-nonce-0123456789"
    before = live.snapshot()
    r = live.client.get("/v1/statement", params={"nonce": nonce}, headers=auth(token))
    assert r.status_code == 200, r.text
    payer = public_key_from_pem(live.identity()["payment_key"])
    statement = jws.verify(r.json()["statement"], Statement, keys=payer, now=0)
    assert statement.nonce == nonce
    assert statement.device_id == live.device.device_id
    assert statement.counter == before.counter
    assert statement.purses.prepaid == {"JPY": 700}
    assert live.snapshot() == before  # no commit
