"""`center credit issue`, `center device revoke|reset`, `center ledger report` (real SQLite), and statements
(`POST /v1/statements`)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from center.__main__ import main
from center.db import tx
from center.db.commerce import CreditRow, Device
from center.services.catalog import CatalogService
from center.settings import CenterSettings
from protocol.pricing import Purses
from tests.center.commerce import Center, problem
from tests.center.conftest import Media, add, live_center


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def center(settings: CenterSettings, catalog: CatalogService) -> Center:
    return Center(settings)


def test_credit_issue_redeem_and_report(
    capsys: pytest.CaptureFixture[str], center: Center, settings: CenterSettings
) -> None:
    device = center.device()
    data = str(settings.data_dir)
    code, out, err = run(
        capsys,
        "credit",
        "issue",
        "--device",
        device.device_id,
        "--prepaid",
        "700",
        "jpy",
        "--data",
        data,
        "--json",
    )
    assert code == 0, err
    issued = json.loads(out)
    assert issued["amount"] == {"amount": 700, "currency": "JPY"}
    with tx.read(center.commerce.sessions) as session:
        stored = session.scalars(select(CreditRow)).one()
        assert stored.code_hash != issued["code"]
        assert issued["code"] not in json.dumps([stored.code_hash, stored.credit_jws])  # never in clear
    r = center.client.request(
        "POST",
        "/v1/credits/redeem",
        json={"code": issued["code"], "device_id": device.device_id},
        headers=device.headers,
    )
    assert r.status_code == 200, r.text
    code, out, _ = run(capsys, "ledger", "report", "--data", data, "--json")
    assert code == 0
    report = json.loads(out)
    assert report["checks"]["ok"]
    assert report["checks"]["total_debits"] == report["checks"]["total_credits"] == 700
    wallet = next(a for a in report["accounts"] if a["kind"] == "wallet")
    assert wallet["available"] == 700
    code, out, _ = run(capsys, "ledger", "report", "--data", data)
    assert code == 0
    assert "ledger ok" in out
    # bad input: one line, exit 2, nothing written
    for args in (
        ("--prepaid", "-5", "JPY"),
        ("--prepaid", "5", "JPY", "--coupon", "5", "JPY"),
        ("--coupon", "0", "JPY"),
        ("--prepaid", "5", "JPY", "--expires", "400"),
    ):
        code, _, err = run(capsys, "credit", "issue", "--device", device.device_id, *args, "--data", data)
        assert code == 2, err
        assert err.startswith("center: error:")
        assert err.count("\n") == 1
    code, _, err = run(
        capsys, "credit", "issue", "--device", "dev_" + "a" * 32, "--prepaid", "5", "JPY", "--data", data
    )
    assert code == 2, err
    with tx.read(center.commerce.sessions) as session:
        assert len(session.scalars(select(CreditRow)).all()) == 1


def test_device_revoke_and_reset(
    capsys: pytest.CaptureFixture[str],
    center: Center,
    settings: CenterSettings,
    media: Media,
    catalog: CatalogService,
) -> None:
    device = center.device()
    center.fund(device, 1000)
    item = add(catalog, media.text, price=100)
    data = str(settings.data_dir)
    code, _, err = run(capsys, "device", "revoke", device.device_id, "--data", data)
    assert code == 0, err
    problem(center.order(device, item), "device-revoked", 403)
    code, out, _ = run(capsys, "ledger", "report", "--data", data, "--json")
    assert json.loads(out)["devices"] == [
        {"device_id": device.device_id, "state": "revoked", "reason": "revoked by the operator"}
    ]
    code, out, err = run(capsys, "device", "reset", device.device_id, "--data", data, "--json")
    assert code == 0, err
    with tx.read(center.commerce.sessions) as session:
        row = session.get(Device, device.device_id)
        assert row is not None
        assert row.token_hash is None
        assert row.ek_hash == ""
        assert row.state == "revoked"  # a reset lifts no revocation
    problem(center.order(device, item), "unauthorized", 401)
    assert center.balance(f"wallet:{device.device_id}:JPY") == 1000  # moved no money
    code, _, err = run(capsys, "device", "revoke", "dev_" + "b" * 32, "--data", data)
    assert code == 2
    assert "no device" in err


def test_statements(center: Center, media: Media, catalog: CatalogService) -> None:
    device = center.device()
    center.fund(device, 1000)
    item = add(catalog, media.text, price=100)
    paid = center.order(device, item).json()
    center.pay(device, paid["order_id"], device.payment(center.commerce, paid["order"]))
    unpaid = center.order(device, item).json()  # the device committed it; the payment is in its outbox
    statement = device.statement(center.commerce, Purses(prepaid={"JPY": 800}), (unpaid["order_id"],))
    r = center.client.request("POST", "/v1/statements", json={"statement": statement}, headers=device.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["matches"] is False
    assert [d["kind"] for d in body["differences"]] == ["outbox-unpaid"]  # 900 posted - 100 held = 800
    center.fund(device, 200, kind="coupon")
    problem(
        center.client.request(
            "POST", "/v1/statements", json={"statement": statement}, headers=device.headers
        ),
        "conflict",
        409,
    )
    wrong = device.statement(center.commerce, Purses(prepaid={"JPY": 5}), ("ord_nothing",))
    r = center.client.request("POST", "/v1/statements", json={"statement": wrong}, headers=device.headers)
    kinds = sorted(d["kind"] for d in r.json()["differences"])
    assert kinds == ["coupon-missing", "outbox-unknown", "prepaid"]
    other = center.device()
    problem(
        center.client.request("POST", "/v1/statements", json={"statement": wrong}, headers=other.headers),
        "invalid-signature",
        422,
    )
    before = center.ledger_state()
    truncated = statement[: len(statement) // 2]
    r = center.client.request("POST", "/v1/statements", json={"statement": truncated}, headers=device.headers)
    assert r.status_code == 422
    assert center.ledger_state() == before


@pytest.mark.integration
def test_serve_warns_when_enrollment_is_unattested(tmp_path: Path) -> None:
    with live_center(
        tmp_path / "c", "--allow-unattested", "--welcome-credit", "500", "--max-unpaid", "3"
    ) as server:
        assert httpx.get(server.url + "/v1/health").status_code == 200
    log = server.log.read_text()
    assert "--allow-unattested: EK certificate chains are NOT checked" in log
    code = main(["serve", "--data", str(tmp_path / "d"), "--ek-ca", str(tmp_path / "missing.pem")])
    assert code == 1  # an unreadable EK CA file stops the start (one line on stderr)
