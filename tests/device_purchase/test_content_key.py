"""Ke's unwrap, one helper for both of its users (`WalletKernel._unwrap_content_key`): a purchase refuses an
order whose wrapped key does not give a 32-byte key with InvalidMessage (problem `invalid-signature`), a
deferred item whose stored wrapped key no longer opens is CorruptContent at its first open; neither changes
any state. Unit tier: the wallet over a fake counter and a software KEM key (tests/device/fakes.py); the TPM's
ECDH_ZGen path is tests/device_purchase/test_hot_path.py's. The orders are the forger's
(tests/support/forger.py): the real center enrolls only a device swtpm attests, and it never wraps Ke to
another key or to 16 bytes."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from device_os.errors import CorruptContent, InvalidMessage
from protocol import hpke
from protocol.b64 import b64url_decode, b64url_encode
from protocol.messages import Order
from tests.device.fakes import SoftDevice, chunks
from tests.support.forger import Forger

CONTENT = b"content key " * 500


@pytest.fixture
def center() -> Forger:
    return Forger()


@pytest.fixture
def dev(tmp_path: Path, center: Forger) -> SoftDevice:
    d = SoftDevice(tmp_path)
    d.wallet.accept_enrollment(center.enrollment(d.device_id), center.root_jwk)
    d.wallet.apply_credit(center.credit(d.device_id, amount=1000))
    return d


def test_an_order_wrapped_to_another_device_is_refused_without_a_state_change(
    dev: SoftDevice, center: Forger
) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1()).public_key()
    order, stream_bytes = center.order_for(dev.device_id, stranger, CONTENT, item_id="book", price=10)
    before = dev.snapshot()
    with pytest.raises(InvalidMessage, match="the order's wrapped key does not open"):
        dev.wallet.purchase(order, chunks(stream_bytes))
    assert dev.snapshot() == before


def test_an_order_whose_key_is_not_32_bytes_is_refused_without_a_state_change(
    dev: SoftDevice, center: Forger
) -> None:
    order, stream_bytes = center.order_for(
        dev.device_id, dev.kem.public_key(), CONTENT, item_id="book", price=10
    )
    order_id = Order.model_validate_json(b64url_decode(order.split(".")[1])).order_id
    short = hpke.seal(dev.kem.public_key(), b"\x01" * 16, info=hpke.content_key_info(order_id))
    before = dev.snapshot()
    with pytest.raises(InvalidMessage, match="the order's wrapped key is not a 32-byte"):
        dev.wallet.purchase(center.resign(order, wrapped_key=b64url_encode(short)), chunks(stream_bytes))
    assert dev.snapshot() == before


def test_a_deferred_item_whose_stored_key_no_longer_opens_is_corrupt_without_a_state_change(
    dev: SoftDevice, center: Forger
) -> None:
    order, stream_bytes = center.order_for(
        dev.device_id, dev.kem.public_key(), CONTENT, item_id="clip", price=10
    )
    dev.wallet.purchase(order, chunks(stream_bytes), mode="deferred")
    dev.session.kem = ec.generate_private_key(ec.SECP256R1())  # not the key it was wrapped to
    before = dev.snapshot()
    with pytest.raises(CorruptContent, match="the stored wrapped key does not open"):
        b"".join(dev.wallet.open_item("clip"))
    assert dev.snapshot() == before
    assert dev.wallet.body.library["clip"].mode == "deferred"
