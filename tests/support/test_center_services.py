"""The real center's services in process (tests/support/center_services.py) drive the device core on swtpm
through a whole purchase: attested enrollment, a redeemed credit, an order and its stream, the payment
settled into a receipt the wallet accepts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from device_os.core.device import Device
from device_os.settings import DeviceSettings
from tests.support.center_services import CenterServices
from tests.support.swtpm import SwtpmInstance

pytestmark = [pytest.mark.swtpm]
PIN = "123456"


def test_enroll_credit_order_pay_in_process(swtpm: SwtpmInstance, tmp_path: Path) -> None:
    content = os.urandom(150_000)
    device = Device.open(
        DeviceSettings(data_dir=tmp_path / "device", tcti=swtpm.tcti, trust_first_center=True)
    )
    with CenterServices(tmp_path / "center", swtpm.ca_bundle, welcome_credit=200) as center:
        try:
            device.provision()
            device.setup(PIN)
            device.unlock(PIN)
            enrolled = center.enroll(device)
            assert enrolled.device_id == device.device_id
            assert enrolled.welcome_credit is not None
            wallet = device.wallet()
            wallet.apply_credit(enrolled.welcome_credit)
            wallet.apply_credit(center.credit(device.device_id, 800))
            item = center.add_item(content, price=300)
            order, body = center.order(device.device_id, item)
            answer = wallet.purchase(order, [body[i : i + 9000] for i in range(0, len(body), 9000)])
            wallet.apply_receipt(center.pay(answer.order_id, answer.payment, device.device_id))
            view = wallet.view()
            assert view.purses.prepaid == {"JPY": 200 + 800 - 300}
            assert view.outbox == ()
            assert [entry.item_id for entry in wallet.library()] == [item]
        finally:
            device.close()
