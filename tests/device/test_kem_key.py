"""The device's KEM key carries the PIN (issue 12 #7): made at setup with the PIN, kept in `keys/kem.key`
beside the payment key (through setup.next/ and pin.next/), loaded at unlock, re-authorized at a PIN change.
With the blob from the SD card but without the PIN, the TPM computes no ECDH."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from device_os.core.device import Device
from device_os.tpm import KeyBlob, TpmWrongPin
from protocol import attestation
from protocol.attestation import ATTR_NO_DA, ATTR_USER_WITH_AUTH, CertifyEvidence
from protocol.b64 import b64url_decode
from protocol.keys import jwk_from_public_key
from tests.device.conftest import PIN
from tests.support.swtpm import SwtpmInstance

pytestmark = pytest.mark.swtpm
NEW_PIN = "97531246"


def _blobs(device: Device) -> tuple[KeyBlob, KeyBlob]:
    keys = device.data_dir / "keys"
    return KeyBlob.from_bytes((keys / "kem.key").read_bytes()), KeyBlob.from_bytes(
        (keys / "payment.key").read_bytes()
    )


def _ecdh(device: Device, kem: KeyBlob, pay: KeyBlob, pin: str, peer: ec.EllipticCurvePrivateKey) -> bytes:
    key, _ = device.tpm.load_hot_keys(kem, pay, pin.encode("ascii"))
    try:
        return key.exchange(ec.ECDH(), peer.public_key())
    finally:
        device.tpm.unload_hot_keys()


def test_the_kem_key_needs_the_pin_and_follows_a_pin_change(
    swtpm: SwtpmInstance, make_device: Callable[..., Device]
) -> None:
    device = make_device(swtpm)
    device.provision()
    device.setup(PIN)
    identity = device.identity()
    evidence = CertifyEvidence.from_json(identity["certify"]["kem"])
    certified = attestation.verify_certify(evidence, nonce=b64url_decode(identity["certify_nonce"]))
    assert certified.attributes & ATTR_USER_WITH_AUTH
    assert not certified.attributes & ATTR_NO_DA  # a wrong PIN on it counts against the lockout
    kem, pay = _blobs(device)
    assert kem.public == evidence.certified_public
    assert jwk_from_public_key(device.tpm.public_key(kem)) == identity["kem_jwk"]
    peer = ec.generate_private_key(ec.SECP256R1())
    expected = peer.exchange(ec.ECDH(), device.tpm.public_key(kem))

    with pytest.raises(TpmWrongPin):
        _ecdh(device, kem, pay, "999999", peer)
    assert _ecdh(device, kem, pay, PIN, peer) == expected

    device.unlock(PIN)
    device.change_pin(PIN, NEW_PIN)
    device.lock()
    new_kem, new_pay = _blobs(device)
    assert new_kem.public == kem.public
    assert new_kem.private != kem.private
    assert _ecdh(device, new_kem, new_pay, NEW_PIN, peer) == expected
    with pytest.raises(TpmWrongPin):
        _ecdh(device, new_kem, new_pay, PIN, peer)
    device.unlock(NEW_PIN)  # and the device itself unwraps with it
    assert device.wallet() is not None
