"""Ke's unwrap, one helper for both of its users (`WalletKernel._unwrap_content_key`): a purchase refuses an
order whose wrapped key does not give a 32-byte key with InvalidMessage (problem `invalid-signature`), a
deferred item whose stored wrapped key no longer opens is CorruptContent at its first open; neither changes
any state. Unit tier: the wallet over a fake counter and a software KEM key (tests/device/fakes.py); the TPM's
ECDH_ZGen path is tests/device_purchase/test_hot_path.py's."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from device_os.errors import CorruptContent, InvalidMessage
from protocol import hpke
from protocol.b64 import b64url_decode, b64url_encode
from protocol.messages import Order
from tests.device.center import TestCenter, chunks
from tests.device.fakes import SoftDevice

CONTENT = b"content key " * 500


@pytest.fixture
def dev(tmp_path: Path, center: TestCenter) -> SoftDevice:
    d = SoftDevice(tmp_path)
    d.wallet.accept_enrollment(center.enrollment(d.device_id), center.root_jwk)
    d.wallet.apply_credit(center.credit(d.device_id, amount=1000))
    return d


def _rewrapped(center: TestCenter, order_jws: str, wrapped: bytes) -> str:
    """The same order signed again with another `wrapped_key` (the center signs what it wraps)."""
    order = Order.model_validate_json(b64url_decode(order_jws.split(".")[1]))
    return center._sign(order.model_copy(update={"wrapped_key": b64url_encode(wrapped)}))


def test_an_order_wrapped_to_another_device_is_refused_without_a_state_change(
    dev: SoftDevice, center: TestCenter
) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1()).public_key()
    order, stream_bytes = center.order(dev.device_id, stranger, "book", 10, CONTENT)
    before = dev.snapshot()
    with pytest.raises(InvalidMessage, match="the order's wrapped key does not open"):
        dev.wallet.purchase(order, chunks(stream_bytes))
    assert dev.snapshot() == before


def test_an_order_whose_key_is_not_32_bytes_is_refused_without_a_state_change(
    dev: SoftDevice, center: TestCenter
) -> None:
    order, stream_bytes = center.order(dev.device_id, dev.kem.public_key(), "book", 10, CONTENT)
    order_id = Order.model_validate_json(b64url_decode(order.split(".")[1])).order_id
    short = hpke.seal(dev.kem.public_key(), b"\x01" * 16, info=hpke.content_key_info(order_id))
    before = dev.snapshot()
    with pytest.raises(InvalidMessage, match="the order's wrapped key is not a 32-byte"):
        dev.wallet.purchase(_rewrapped(center, order, short), chunks(stream_bytes))
    assert dev.snapshot() == before


def test_a_deferred_item_whose_stored_key_no_longer_opens_is_corrupt_without_a_state_change(
    dev: SoftDevice, center: TestCenter
) -> None:
    order, stream_bytes = center.order(dev.device_id, dev.kem.public_key(), "clip", 10, CONTENT)
    dev.wallet.purchase(order, chunks(stream_bytes), mode="deferred")
    dev.session.kem = ec.generate_private_key(ec.SECP256R1())  # not the key it was wrapped to
    before = dev.snapshot()
    with pytest.raises(CorruptContent, match="the stored wrapped key does not open"):
        b"".join(dev.wallet.open_item("clip"))
    assert dev.snapshot() == before
    assert dev.wallet.body.library["clip"].mode == "deferred"
