"""The shared real center (tests/support/center.py) drives a whole purchase: a device service on swtpm
enrolled through `center serve` (EK chain against swtpm's CA), funded by the welcome credit and a redeemed
code, an order for an item registered in process, the device's payment settled into the center's receipt."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.device_api.live import LiveDevice, auth, set_up_device
from tests.support.center import RealCenter, enroll, ok
from tests.support.swtpm import SwtpmInstance

pytestmark = [pytest.mark.swtpm, pytest.mark.integration]


@pytest.fixture
def device(swtpm: SwtpmInstance, tmp_path: Path) -> Iterator[LiveDevice]:
    with set_up_device(tmp_path / "device", swtpm.tcti) as live:
        yield live


def test_enroll_fund_order_pay(device: LiveDevice, swtpm: SwtpmInstance, tmp_path: Path) -> None:
    content = os.urandom(100_000)
    token = device.unlock()
    with (
        RealCenter(tmp_path / "center", swtpm.ca_bundle, welcome_credit=300) as center,
        center.client() as http,
    ):
        item = center.add_content(content, price=250)
        account = enroll(http, device.client, token)
        assert account.welcome_credit is not None
        ok(device.client.post("/v1/credits", json={"credit": account.welcome_credit}, headers=auth(token)))
        credit = account.redeem(center.issue_code(account.device_id, 700))
        ok(device.client.post("/v1/credits", json={"credit": credit}, headers=auth(token)))
        order, body = account.bought(item)
        headers = {**auth(token), "Coffer-Order": order["order"], "Content-Type": "application/octet-stream"}
        bought = ok(device.client.post("/v1/purchases", content=body, headers=headers))
        receipt = account.pay(order["order_id"], bought["payment"])
        ok(device.client.post("/v1/receipts", json={"receipt": receipt}, headers=auth(token)))
        wallet = ok(device.client.get("/v1/wallet", headers=auth(token)))
        assert wallet["purses"]["prepaid"] == {"JPY": 300 + 700 - 250}
        got = device.client.get(f"/v1/library/{item}/content", headers=auth(token)).content
        assert hashlib.sha256(got).digest() == hashlib.sha256(content).digest()
    assert center.process is None
