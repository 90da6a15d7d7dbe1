"""The forger's settlement side: what a device seals to its payment key opens, and the receipt names it."""

from __future__ import annotations

import pytest

from protocol import hpke, jws
from protocol.b64 import b64url_encode
from protocol.errors import HpkeError
from protocol.messages import Receipt, message_hash
from tests.support.forger import T0, Forger

DEVICE = "dev_" + "a" * 32


def test_a_sealed_payment_opens_and_its_receipt_names_its_hash() -> None:
    forger = Forger()
    sealed = b64url_encode(
        hpke.seal(forger.payment.public_key(), b"a.payment.jws", info=hpke.payment_info("o1"))
    )
    assert forger.open_payment("o1", sealed) == "a.payment.jws"
    token = forger.receipt_for_payment(DEVICE, "o1", sealed, iat=T0 + 5)
    receipt = jws.verify(token, Receipt, keys=forger.signing.public_key(), now=0)
    assert (receipt.order_id, receipt.device_id, receipt.iat) == ("o1", DEVICE, T0 + 5)
    assert receipt.payment_hash == message_hash("a.payment.jws")


def test_a_payment_sealed_for_another_order_does_not_open() -> None:
    forger = Forger()
    sealed = b64url_encode(
        hpke.seal(forger.payment.public_key(), b"a.payment.jws", info=hpke.payment_info("o1"))
    )
    with pytest.raises(HpkeError):
        forger.open_payment("o2", sealed)
