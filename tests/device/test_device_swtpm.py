"""The device core on a real swtpm: provision, setup, unlock, lock, PIN change, tamper, hot path, races."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from device_os.core.device import Device, Phase
from device_os.errors import (
    AlreadySetUp,
    InsufficientFunds,
    Locked,
    NotSetUp,
    Tampered,
    WeakPin,
    WrongPin,
)
from device_os.tpm import Tpm
from protocol import jws
from protocol.attestation import CertifyEvidence
from protocol.keys import public_key_from_jwk
from protocol.messages import Payment
from tests.device.conftest import PIN, CoreCenter
from tests.support.swtpm import SwtpmInstance

pytestmark = pytest.mark.swtpm
CONTENT = b"coffer content " * 3000


def chunks(data: bytes, size: int = 7000) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def buy(device: Device, real: CoreCenter, item: str, price: int, content: bytes = CONTENT):  # type: ignore[no-untyped-def]
    """The real center's order for `item` and the device's purchase of it."""
    order, s = real.order(device.device_id, item, price, content)
    return order, device.wallet().purchase(order, chunks(s))


def snapshot(device: Device) -> tuple[int, bytes, list[str]]:
    return device.tpm.counter_read(), device.store.state_path.read_bytes(), device.content.listing()


def test_provision_is_idempotent(swtpm: SwtpmInstance, make_device: Callable[..., Device]) -> None:
    device = make_device(swtpm)
    assert device.phase() is Phase.NOT_PROVISIONED
    first = device.provision()
    assert device.phase() is Phase.NOT_SET_UP
    counter = device.tpm.counter_read()
    again = device.provision()
    assert again.to_bytes() == first.to_bytes()
    assert device.tpm.counter_read() == counter
    with pytest.raises(NotSetUp):
        device.unlock(PIN)
    with pytest.raises(NotSetUp):
        device.identity()


@pytest.mark.parametrize("aead", ["aes-256-gcm", "chacha20-poly1305"])
def test_setup_unlock_lock(
    swtpm: SwtpmInstance, make_device: Callable[..., Device], real: CoreCenter, aead: str
) -> None:
    device = make_device(swtpm, aead=aead)
    device.provision()
    for weak in ("12345", "abcdef", "12 456", "１２３４５６", "1" * 33):
        with pytest.raises(WeakPin):
            device.setup(weak)
    assert not (device.data_dir / "keys").exists()
    device.setup(PIN)
    with pytest.raises(AlreadySetUp):
        device.setup(PIN)
    identity = device.identity()
    assert identity["aead"] == aead
    assert identity["device_id"] == device.device_id
    for name in ("kem", "payment"):
        CertifyEvidence.from_json(identity["certify"][name])
    assert device.phase() is Phase.LOCKED
    with pytest.raises(Locked):
        device.wallet()
    device.unlock(PIN)
    wallet = device.wallet()
    real.enroll(device)  # attested by the real center; its orders use the AEAD the device declared
    wallet.apply_credit(real.credit(device.device_id, amount=1000))
    _, answer = buy(device, real, "book", 100)
    state = device.store.state_path.read_bytes()
    assert state[:4] == b"CST1"
    blob = device.content.path(wallet.body.library[real.item("book")].blob).read_bytes()
    assert blob[5] == (1 if aead == "aes-256-gcm" else 2)
    device.lock()
    assert device.phase() is Phase.LOCKED
    with pytest.raises(Locked):
        device.wallet()
    device.close()
    # restart: same state, unlock again
    again = make_device(swtpm, aead="chacha20-poly1305" if aead == "aes-256-gcm" else "aes-256-gcm")
    assert again.phase() is Phase.LOCKED
    again.unlock(PIN)
    assert again.wallet().body.purses.prepaid == {"JPY": 900}
    assert b"".join(again.wallet().open_item(real.item("book"))) == CONTENT
    assert again.wallet().stored_answer(answer.order_id) == answer


def test_wrong_pins(ready: Device) -> None:
    device = ready
    before = device.tpm.da_status().failed_tries
    # unlocked: checked against RAM, the TPM never sees it; three in a row lock the device
    with pytest.raises(WrongPin):
        device.unlock("000000")
    with pytest.raises(WrongPin):
        device.unlock("000000")
    device.unlock(PIN)  # a right one resets the count
    for _ in range(2):
        with pytest.raises(WrongPin):
            device.unlock("999999")
    assert device.phase() is Phase.UNLOCKED
    with pytest.raises(WrongPin):
        device.unlock("999999")
    assert device.phase() is Phase.LOCKED
    assert device.tpm.da_status().failed_tries == before
    # locked: the TPM judges the PIN and counts a failure
    with pytest.raises(WrongPin) as info:
        device.unlock("111111")
    assert info.value.tries_left == 10 - before - 1
    assert device.tpm.da_status().failed_tries == before + 1
    with pytest.raises(WrongPin):
        device.unlock("12")  # not even a PIN: refused without a TPM try
    assert device.tpm.da_status().failed_tries == before + 1
    device.unlock(PIN)
    assert device.phase() is Phase.UNLOCKED


def test_change_pin(
    ready: Device, real: CoreCenter, make_device: Callable[..., Device], swtpm: SwtpmInstance
) -> None:
    device = ready
    device.wallet().apply_credit(real.credit(device.device_id, amount=1000))
    with pytest.raises(WrongPin):
        device.change_pin("000000", "7654321")
    with pytest.raises(WeakPin):
        device.change_pin(PIN, "12")
    device.change_pin(PIN, "7654321")
    assert not (device.data_dir / "pin.next").exists()
    assert not (device.data_dir / "keys.old").exists()
    _, answer = buy(device, real, "book", 100)  # signs with the re-authed payment key
    payer = public_key_from_jwk(device.identity()["payment_jwk"])
    token = real.open_payment(answer.order_id, answer.payment)
    jws.verify(token, Payment, keys=payer, now=0)
    device.close()
    again = make_device(swtpm)
    with pytest.raises(WrongPin):
        again.unlock(PIN)
    again.unlock("7654321")
    assert again.wallet().body.purses.prepaid == {"JPY": 900}


def test_hot_path_tpm_commands(ready: Device, real: CoreCenter) -> None:
    """ECDH_ZGen, Sign, NV_Increment, and the counter read back (NV_Read: issue 12, finding 5)."""
    device = ready
    wallet = device.wallet()
    wallet.apply_credit(real.credit(device.device_id, amount=1000))
    order, s = real.order(device.device_id, "song", 100, CONTENT)
    before = device.tpm.commands
    wallet.purchase(order, chunks(s))
    assert device.tpm.commands - before == 4
    assert device.tpm.recent_commands()[-4:] == ["ECDH_ZGen", "Sign", "NV_Increment", "NV_Read"]


def test_rollback_and_deletion_are_tamper(
    ready: Device,
    real: CoreCenter,
    make_device: Callable[..., Device],
    swtpm: SwtpmInstance,
    tmp_path: Path,
) -> None:
    device = ready
    device.wallet().apply_credit(real.credit(device.device_id, amount=1000))
    old = device.store.state_path.read_bytes()
    buy(device, real, "book", 400)
    device.close()
    state = device.store.state_path
    current = state.read_bytes()
    # an older state restored: tamper, spending refused, said so in the status
    state.write_bytes(old)
    d2 = make_device(swtpm)
    st = d2.status()
    assert st.tampered
    assert st.phase is Phase.TAMPERED
    with pytest.raises(Tampered):
        d2.unlock(PIN)
    with pytest.raises(Tampered):
        d2.wallet()
    with pytest.raises(Tampered):
        d2.setup(PIN)  # never a silent reset
    d2.close()
    # state deleted: tamper (a sealed DEK exists), not "not set up"
    state.unlink()
    d3 = make_device(swtpm)
    assert d3.status().tampered
    assert d3.phase() is Phase.TAMPERED
    with pytest.raises(Tampered):
        d3.setup(PIN)
    d3.close()
    # a state whose body was altered (header intact): tamper at the first unlock
    bad = bytearray(current)
    bad[-1] ^= 1
    state.write_bytes(bytes(bad))
    d4 = make_device(swtpm)
    assert d4.phase() is Phase.LOCKED
    with pytest.raises(Tampered):
        d4.unlock(PIN)
    assert d4.status().tampered
    d4.close()
    # the right state back: fine again
    state.write_bytes(current)
    d5 = make_device(swtpm)
    d5.unlock(PIN)
    assert d5.wallet().body.purses.prepaid == {"JPY": 600}


def test_not_set_up_versus_tamper(swtpm: SwtpmInstance, make_device: Callable[..., Device]) -> None:
    device = make_device(swtpm)
    device.provision()
    # leftovers of an interrupted setup without a committed state: still "not set up"
    (device.data_dir / "setup.next").mkdir()
    (device.data_dir / "setup.next" / "dek.sealed").write_bytes(b"x")
    (device.data_dir / "state.next").write_bytes(b"CST1" + (99).to_bytes(8, "big") + b"junk")
    device.close()
    d2 = make_device(swtpm)
    assert d2.phase() is Phase.NOT_SET_UP
    assert not (d2.data_dir / "setup.next").exists()
    assert not (d2.data_dir / "state.next").exists()
    # a state without keys: tamper
    d2.setup(PIN)
    shutil.rmtree(d2.data_dir / "keys")
    d2.close()
    d3 = make_device(swtpm)
    assert d3.phase() is Phase.TAMPERED


def test_race_for_the_last_of_the_balance(ready: Device, real: CoreCenter) -> None:
    device = ready
    wallet = device.wallet()
    wallet.apply_credit(real.credit(device.device_id, amount=300))
    real.credit(device.device_id, amount=300)  # redeemed, never given to the device: the center holds both
    orders = [real.order(device.device_id, f"item{i}", 300, CONTENT) for i in range(2)]
    barrier = threading.Barrier(2)
    results: list[object] = []

    def run(i: int) -> None:
        order, s = orders[i]
        barrier.wait()
        try:
            results.append(device.wallet().purchase(order, chunks(s)))
        except InsufficientFunds as exc:
            results.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(type(r).__name__ for r in results) == ["InsufficientFunds", "PurchaseAnswer"]
    body = wallet.body
    assert body.purses.prepaid == {}
    assert len(body.library) == 1
    assert len(body.outbox) == 1
    assert device.content.listing() == [e.blob + ".cfs" for e in body.library.values()]
    assert device.tpm.counter_read() == device.store.counter


def test_refusals_change_nothing(ready: Device, real: CoreCenter) -> None:
    device = ready
    wallet = device.wallet()
    wallet.apply_credit(real.credit(device.device_id, amount=100))
    real.credit(device.device_id, amount=500)  # redeemed, never given to the device: the center will order
    snap = snapshot(device)
    with pytest.raises(InsufficientFunds):
        buy(device, real, "big", 500)
    order, s = real.order(device.device_id, "cut", 10, CONTENT)
    with pytest.raises(Exception):  # noqa: B017, PT011 - any refusal; the point is what follows
        wallet.purchase(order, chunks(s[: len(s) // 2]))
    assert snapshot(device) == snap


def test_auto_lock(swtpm: SwtpmInstance, tmp_path: Path) -> None:
    from device_os.settings import DeviceSettings

    now = [1000.0]
    settings = DeviceSettings(data_dir=tmp_path / "d", tcti=swtpm.tcti)
    assert settings.auto_lock_seconds == 900
    tpm = Tpm.open(swtpm.tcti)
    device = Device(settings, tpm, clock=lambda: now[0])
    try:
        device.provision()
        device.setup(PIN)
        device.unlock(PIN)
        now[0] += 899
        device.wallet()  # activity resets the timer
        now[0] += 899
        assert not device.check_idle()
        now[0] += 1
        assert device.check_idle()
        assert device.phase() is Phase.LOCKED
        device.unlock(PIN)
        now[0] += 2000
        with pytest.raises(Locked):
            device.wallet()
    finally:
        device.close()


def test_plaintext_scan(
    ready: Device,
    real: CoreCenter,
    caplog: pytest.LogCaptureFixture,
    make_device: Callable[..., Device],
    swtpm: SwtpmInstance,
) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    device = ready
    marker = b"MARKER-7c1e9d-PLAINTEXT-MUST-NOT-LEAK"
    content = (marker + b" ") * 2000
    wallet = device.wallet()
    wallet.apply_credit(real.credit(device.device_id, amount=1000))
    buy(device, real, "secret", 100, content)
    # deferred mode too, and its first open
    order, s = real.order(device.device_id, "later", 100, content)
    wallet.purchase(order, chunks(s), mode="deferred")
    assert b"".join(wallet.open_item(real.item("later"))) == content
    assert b"".join(wallet.open_item(real.item("secret"))) == content
    dek = device._session.dek if device._session else b""  # the test needs the key to look for it
    assert len(dek) == 32
    device.change_pin(PIN, "90817263")
    device.lock()
    device.close()
    again = make_device(swtpm)
    again.unlock("90817263")
    needles = {
        "marker": marker,
        "pin": PIN.encode(),
        "new pin": b"90817263",
        "dek": dek,
        "dek hex": dek.hex().encode(),
    }
    import base64

    needles["dek b64"] = base64.b64encode(dek).rstrip(b"=")
    needles["dek b64url"] = base64.urlsafe_b64encode(dek).rstrip(b"=")
    files = [p for p in device.data_dir.rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        for name, needle in needles.items():
            assert needle not in data, f"{name} found in {path}"
    log_text = "\n".join(r.getMessage() for r in caplog.records).encode()
    assert log_text  # the core does log
    for name, needle in needles.items():
        assert needle not in log_text, f"{name} found in the log"
    json.loads((device.data_dir / "keys" / "identity.json").read_text())


def test_identity_evidence_and_credential_activation(ready: Device) -> None:
    from protocol import attestation
    from protocol.b64 import b64url_decode
    from protocol.keys import jwk_from_public_key

    identity = ready.identity()
    nonce = b64url_decode(identity["certify_nonce"])
    kem = attestation.verify_certify(CertifyEvidence.from_json(identity["certify"]["kem"]), nonce=nonce)
    pay = attestation.verify_certify(CertifyEvidence.from_json(identity["certify"]["payment"]), nonce=nonce)
    assert jwk_from_public_key(attestation.check_kem_key(kem)) == identity["kem_jwk"]
    assert jwk_from_public_key(attestation.check_payment_key(pay)) == identity["payment_jwk"]
    ak_public = CertifyEvidence.from_json(identity["certify"]["kem"]).ak_public
    ak_name = attestation.parse_public(ak_public).name
    blob, secret = attestation.make_credential(b64url_decode(identity["ek_public"]), ak_name, b"s" * 32)
    assert ready.activate_credential(blob, secret) == b"s" * 32


def test_tpm_lost_mid_commit_then_recovered(ready: Device, real: CoreCenter, swtpm: SwtpmInstance) -> None:
    from device_os.errors import Unavailable

    device = ready
    wallet = device.wallet()
    wallet.apply_credit(real.credit(device.device_id, amount=100))
    tries = device.tpm.da_status().failed_tries
    state = device.store.state_path.read_bytes()
    swtpm.kill()  # an unplug of the TPM alone, while unlocked
    with pytest.raises(Unavailable):
        wallet.apply_credit(real.credit(device.device_id, amount=50))
    with pytest.raises(Unavailable):
        wallet.apply_credit(real.credit(device.device_id, amount=50))
    swtpm.start()
    status = device.start()  # recovery: state.next (never counted by the TPM) is discarded
    assert status.phase is Phase.LOCKED
    assert not (device.data_dir / "state.next").exists()
    assert device.store.state_path.read_bytes() == state
    assert device.tpm.da_status().failed_tries == tries + 1  # one try per unclean TPM shutdown while unlocked
    device.unlock(PIN)
    device.wallet().apply_credit(real.credit(device.device_id, amount=50))
    assert device.wallet().body.purses.prepaid == {"JPY": 150}
