"""The whole flow between the real center (`center serve`, a child process on loopback, SQLite) and the real
device service (in process, on swtpm), the test playing the terminal: enroll (EK chain against swtpm's local
CA, Certify, credential activation) → welcome credit → `center credit issue` + redeem → order → content
stream (downloaded in two Range requests, as a resumed download) → device purchase → payment → receipt →
open the item → statement. Then the ledger report balances and every malformed relay is refused with
problem+json and no ledger change."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from center.__main__ import main
from center.settings import CenterSettings
from tests.center.commerce import fresh_database
from tests.center.conftest import Media, add, catalog_for
from tests.device_api.live import LiveDevice, auth, set_up_device
from tests.support.center import RealCenter, attest, ok
from tests.support.swtpm import SwtpmInstance

pytestmark = [pytest.mark.swtpm, pytest.mark.integration]
WELCOME, PREPAID, PRICE = 1000, 5000, 1500


@pytest.fixture
def device(swtpm: SwtpmInstance, tmp_path: Path) -> Iterator[LiveDevice]:
    with set_up_device(tmp_path / "device", swtpm.tcti) as live:
        yield live


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    return None if request.param == "sqlite" else fresh_database(request.getfixturevalue("postgres"))


def test_enroll_redeem_order_pay_receipt(
    device: LiveDevice,
    swtpm: SwtpmInstance,
    tmp_path: Path,
    media: Media,
    capsys: pytest.CaptureFixture[str],
    database_url: str | None,
) -> None:
    data = tmp_path / "center"
    db = ["--database-url", database_url] if database_url else []
    settings = CenterSettings(data_dir=data, **({"database_url": database_url} if database_url else {}))
    item = add(catalog_for(settings), media.pdf, title="Paper", price=PRICE)
    plaintext = media.pdf.read_bytes()
    token = device.unlock()
    dev = device.client
    with (
        RealCenter(data, swtpm.ca_bundle, welcome_credit=WELCOME, extra=tuple(db)) as server,
        httpx.Client(base_url=server.url, timeout=60) as center,
    ):
        # flow 3: enrollment, two round trips relayed by the "terminal" (identity -> MakeCredential ->
        # ActivateCredential -> the center's answer), then the device accepts it
        answer = attest(center, dev, token)
        ok(
            dev.post(
                "/v1/enrollment",
                json={"enrollment": answer["enrollment"], "root_jwk": answer["root_jwk"]},
                headers=auth(token),
            )
        )
        ok(dev.post("/v1/credits", json={"credit": answer["welcome_credit"]}, headers=auth(token)))
        device_id, bearer = answer["device_id"], auth(answer["device_token"])

        # flow 6: a prepaid credit issued on the server host, redeemed through the terminal
        issued = json.loads(
            cli(
                capsys,
                "credit",
                "issue",
                "--device",
                device_id,
                "--prepaid",
                str(PREPAID),
                "JPY",
                "--data",
                str(data),
                *db,
                "--json",
            )
        )
        credit = ok(
            center.post(
                "/v1/credits/redeem", json={"code": issued["code"], "device_id": device_id}, headers=bearer
            )
        )
        ok(dev.post("/v1/credits", json={"credit": credit["credit"]}, headers=auth(token)))
        assert ok(dev.get("/v1/wallet", headers=auth(token)))["purses"]["prepaid"] == {
            "JPY": WELCOME + PREPAID
        }

        # flow 5: order, content (a download resumed with Range), purchase on the device, payment, receipt
        key = {"Idempotency-Key": secrets.token_urlsafe(16)}
        order = ok(
            center.post(
                "/v1/orders", json={"item_id": item, "device_id": device_id}, headers={**bearer, **key}
            ),
            201,
        )
        assert (
            ok(
                center.post(
                    "/v1/orders", json={"item_id": item, "device_id": device_id}, headers={**bearer, **key}
                )
            )
            == order
        )
        cut = order["content_length"] // 2 + 7
        head = center.get(order["content_url"], headers={**bearer, "Range": f"bytes=0-{cut - 1}"})
        tail = center.get(order["content_url"], headers={**bearer, "Range": f"bytes={cut}-"})
        assert (head.status_code, tail.status_code) == (206, 206)
        whole = head.content + tail.content
        assert whole == center.get(order["content_url"], headers=bearer).content
        bought = ok(
            dev.post(
                "/v1/purchases",
                content=whole,
                headers={
                    **auth(token),
                    "Coffer-Order": order["order"],
                    "Content-Type": "application/octet-stream",
                },
            )
        )
        paid = ok(
            center.post(
                f"/v1/orders/{order['order_id']}/payment", json={"payment": bought["payment"]}, headers=bearer
            )
        )
        assert (
            ok(
                center.post(
                    f"/v1/orders/{order['order_id']}/payment",
                    json={"payment": bought["payment"]},
                    headers=bearer,
                )
            )
            == paid
        )
        ok(dev.post("/v1/receipts", json={"receipt": paid["receipt"]}, headers=auth(token)))
        assert ok(dev.get("/v1/outbox", headers=auth(token)))["entries"] == []
        assert dev.get(f"/v1/library/{item}/content", headers=auth(token)).content == plaintext
        status = ok(center.get(f"/v1/orders/{order['order_id']}", headers=bearer))
        assert status["state"] == "paid"

        # flow 7: the device's signed statement matches the ledger
        nonce = secrets.token_urlsafe(16)
        statement = ok(dev.get("/v1/statement", params={"nonce": nonce}, headers=auth(token)))["statement"]
        reconciled = ok(center.post("/v1/statements", json={"statement": statement}, headers=bearer))
        assert reconciled["matches"] is True, reconciled

        # malformed relays: 4xx problem+json, no ledger change
        before = json.loads(cli(capsys, "ledger", "report", "--data", str(data), *db, "--json"))
        second = ok(
            center.post(
                "/v1/orders",
                json={"item_id": item, "device_id": device_id},
                headers={**bearer, "Idempotency-Key": secrets.token_urlsafe(16)},
            ),
            201,
        )
        before = json.loads(cli(capsys, "ledger", "report", "--data", str(data), *db, "--json"))
        deep = "[" * 100_000 + "]" * 100_000
        for path, body in (
            (
                f"/v1/orders/{second['order_id']}/payment",
                {"payment": bought["payment"]},
            ),  # another order's payment
            (f"/v1/orders/{second['order_id']}/payment", {"payment": bought["payment"][:-10]}),  # truncated
            (f"/v1/orders/{second['order_id']}/payment", {"payment": "A" * 200}),
            ("/v1/statements", {"statement": statement}),  # replayed
            ("/v1/statements", {"statement": statement[: len(statement) // 2]}),
            ("/v1/credits/redeem", {"code": issued["code"], "device_id": "dev_" + "a" * 32}),
        ):
            r = center.post(path, json=body, headers=bearer)
            assert 400 <= r.status_code < 500, (path, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
        r = center.post(
            "/v1/statements", content=deep, headers={**bearer, "Content-Type": "application/json"}
        )
        assert 400 <= r.status_code < 500, r.text
        after = json.loads(cli(capsys, "ledger", "report", "--data", str(data), *db, "--json"))
        assert after == before
        assert after["checks"]["ok"]
        wallet = next(a for a in after["accounts"] if a["kind"] == "wallet")
        assert wallet["balance"] == WELCOME + PREPAID - PRICE
        assert wallet["available"] == WELCOME + PREPAID - 2 * PRICE  # the second order is held
