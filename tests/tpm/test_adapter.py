"""device_os.tpm on a real swtpm: provisioning, blobs across restarts, PINs and lockout, the NV counter,
hot keys and the three-command purchase path, the slot plan, serialization, errors."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from device_os.tpm import (
    COUNTER_INDEX,
    BadBlob,
    KeyBlob,
    KeyNotLoaded,
    Lockout,
    ProvisionedKeys,
    Tpm,
    TpmError,
    TpmNotProvisioned,
    TpmUnavailable,
    TpmWrongPin,
)
from protocol import hpke
from protocol.attestation import ATTR_NO_DA, parse_public
from tests.conftest import SwtpmFactory
from tests.support.swtpm import SwtpmInstance
from tests.tpm.conftest import PIN, Provisioned

pytestmark = pytest.mark.swtpm
REPO = Path(__file__).resolve().parents[2]


def verify_raw(public_key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> None:
    assert len(signature) == 64
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    public_key.verify(der, data, ec.ECDSA(hashes.SHA256()))


# --- provisioning -----------------------------------------------------------------------------------------


def test_provision_is_idempotent_and_sets_the_design_parameters(provisioned: Provisioned) -> None:
    tpm, keys = provisioned.tpm, provisioned.keys
    status = tpm.da_status()
    assert (status.max_tries, status.recovery_time, status.lockout_recovery) == (10, 600, 86400)
    assert status.lockout_auth_set
    assert status.failed_tries == 0
    assert not status.in_lockout
    first = tpm.counter_read()
    assert first >= 1
    assert tpm.provision(keys) == keys  # existing blobs are checked and kept
    assert tpm.counter_read() == first  # the counter is incremented once, at definition only
    again = provisioned.reopen()
    assert again.provision(keys) == keys
    assert again.counter_read() == first
    cert = x509.load_der_x509_certificate(again.ek_certificate())
    assert cert.public_key().key_size == 2048  # type: ignore[union-attr]
    assert parse_public(keys.ak.public).attributes & ATTR_NO_DA  # the KEM key carries the PIN: test_kem_pin
    srk = subprocess.run(
        ["tpm2_readpublic", "-T", provisioned.swtpm.tcti, "-c", "0x81000001"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "noda" in srk.split("attributes:")[1].split("\n")[1]  # the persisted SRK: NODA too


def test_the_lockout_authorization_is_no_longer_empty(provisioned: Provisioned) -> None:
    tcti = provisioned.swtpm.tcti
    # tpm2-tools with the (former) empty lockout auth: refused.
    reset = subprocess.run(["tpm2_dictionarylockout", "-T", tcti, "-c"], capture_output=True, check=False)
    assert reset.returncode != 0
    params = ["tpm2_dictionarylockout", "-T", tcti, "-s", "-n", "1000", "-t", "1", "-l", "1"]
    assert subprocess.run(params, capture_output=True, check=False).returncode != 0
    assert provisioned.tpm.da_status().max_tries == 10


def test_provisioned_keys_serialise(provisioned: Provisioned) -> None:
    keys, kem = provisioned.keys, provisioned.kem
    assert ProvisionedKeys.from_bytes(keys.to_bytes()) == keys
    assert KeyBlob.from_bytes(kem.to_bytes()) == kem
    with pytest.raises(BadBlob):
        KeyBlob.from_bytes(kem.to_bytes() + b"\x00")
    with pytest.raises(BadBlob):
        KeyBlob.from_bytes(kem.to_bytes()[:-1])


def test_provision_refuses_blobs_of_another_tpm_and_recreates_a_missing_ek(
    provisioned: Provisioned, swtpm_factory: SwtpmFactory
) -> None:
    # Every test TPM is a copy of one template, i.e. a clone with the same seeds. TPM2_Clear (platform auth,
    # empty on swtpm) gives this one a new storage seed and evicts the persisted EK; the EK seed stays.
    other = swtpm_factory()
    subprocess.run(["tpm2_clear", "-T", other.tcti, "-c", "p"], check=True, capture_output=True)
    with Tpm.open(other.tcti) as tpm:
        with pytest.raises(TpmNotProvisioned):
            tpm.create_payment_key(PIN)
        with pytest.raises(TpmNotProvisioned):
            tpm.counter_read()
        with pytest.raises(TpmNotProvisioned):
            tpm.ek_public()
        with pytest.raises(BadBlob):
            tpm.provision(provisioned.keys)  # made under another SRK
        keys = tpm.provision(None)
        assert tpm.public_key(keys.ak) != provisioned.tpm.public_key(provisioned.keys.ak)
        # The EK was recreated from the TCG template (same endorsement seed: the same key as certified).
        assert tpm.ek_public() == provisioned.tpm.ek_public()
        assert tpm.ek_certificate() == provisioned.tpm.ek_certificate()


# --- blobs across restarts --------------------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from cryptography.hazmat.primitives.asymmetric import ec
    from device_os.tpm import KeyBlob, Tpm
    d = Path(sys.argv[2])
    tpm = Tpm.open(sys.argv[1])
    kem = KeyBlob.from_bytes((d / "kem.blob").read_bytes())
    pay = KeyBlob.from_bytes((d / "pay.blob").read_bytes())
    dek = KeyBlob.from_bytes((d / "dek.blob").read_bytes())
    secret = tpm.unseal(dek, b"246810")
    kem, payer = tpm.load_hot_keys(kem, pay, b"246810")
    (d / "out.sig").write_bytes(payer.sign(b"from the child"))
    (d / "out.dek").write_bytes(secret)
    if sys.argv[3] == "crash":
        os._exit(0)   # no close(): hot keys stay loaded in swtpm, no TPM2_Shutdown
    tpm.close()
    """
)


def _run_child(tcti: str, directory: Path, mode: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", _CHILD, tcti, str(directory), mode], check=True, env=env, cwd=REPO)


def test_blobs_reload_after_a_process_restart_and_a_crash(provisioned: Provisioned, tmp_path: Path) -> None:
    tpm = provisioned.tpm
    pay = tpm.create_payment_key(PIN)
    dek = tpm.seal(b"D" * 32, PIN)
    (tmp_path / "kem.blob").write_bytes(provisioned.kem.to_bytes())
    (tmp_path / "pay.blob").write_bytes(pay.to_bytes())
    (tmp_path / "dek.blob").write_bytes(dek.to_bytes())
    tpm.close()
    tcti = provisioned.swtpm.tcti
    # A crashed process leaves its 2 hot keys loaded in swtpm (no resource manager): the next open flushes.
    for mode in ("clean", "crash", "crash"):
        _run_child(tcti, tmp_path, mode)
        assert (tmp_path / "out.dek").read_bytes() == b"D" * 32
        verify_raw(tpm.public_key(pay), (tmp_path / "out.sig").read_bytes(), b"from the child")
        assert len(_transient_handles(tcti)) == (2 if mode == "crash" else 0)
    provisioned.reopen()
    assert _transient_handles(tcti) == []
    assert provisioned.tpm.unseal(dek, PIN) == b"D" * 32


def _transient_handles(tcti: str) -> list[str]:
    out = subprocess.run(
        ["tpm2_getcap", "-T", tcti, "handles-transient"], capture_output=True, text=True, check=True
    ).stdout
    return [line.strip("- ") for line in out.splitlines() if line.strip()]


@pytest.mark.parametrize("how", ["orderly", "sigkill"])
def test_blobs_reload_after_a_swtpm_restart(provisioned: Provisioned, how: str) -> None:
    tpm, sw = provisioned.tpm, provisioned.swtpm
    pay = tpm.create_payment_key(PIN)
    dek = tpm.seal(b"secret", PIN)
    kem_public = tpm.public_key(provisioned.kem)
    tpm.close()
    if how == "orderly":
        sw.restart()
    else:
        sw.kill()
        sw.start()
    tpm = provisioned.reopen()
    assert tpm.unseal(dek, PIN) == b"secret"
    kem, payer = tpm.load_hot_keys(provisioned.kem, pay, PIN)
    peer = ec.generate_private_key(ec.SECP256R1())
    assert kem.exchange(ec.ECDH(), peer.public_key()) == peer.exchange(ec.ECDH(), kem_public)
    verify_raw(payer.public_key(), payer.sign(b"after restart"), b"after restart")


# --- PINs, lockout, NODA ----------------------------------------------------------------------------------


def test_wrong_pins_lock_out_and_noda_objects_never_count(provisioned: Provisioned) -> None:
    tpm, keys = provisioned.tpm, provisioned.keys
    dek = tpm.seal(b"dek", PIN)
    pay = tpm.create_payment_key(PIN)
    kem, _ = tpm.load_hot_keys(provisioned.kem, pay, PIN)
    peer = ec.generate_private_key(ec.SECP256R1())
    tries = []
    for _ in range(10):
        with pytest.raises(TpmWrongPin) as wrong:
            tpm.unseal(dek, b"999999")
        tries.append(wrong.value.tries_left)
        tpm.certify(keys.ak, keys.ak, b"n")  # the attestation key is NODA: never counts
    assert tries == list(range(9, -1, -1))
    with pytest.raises(Lockout) as locked:
        tpm.unseal(dek, PIN)  # even the right PIN
    assert locked.value.retry_after == 600
    with pytest.raises(Lockout):
        tpm.certify(keys.ak, pay, b"n", pin=PIN)  # the payment key is DA-protected too
    status = tpm.da_status()
    assert status.in_lockout
    assert status.failed_tries == 10
    with pytest.raises(Lockout):
        kem.exchange(ec.ECDH(), peer.public_key())  # the KEM key carries the PIN: DA-protected too
    # NODA objects keep working in lockout and do not move the counter.
    tpm.certify(keys.ak, keys.ak, b"nonce")
    tpm.counter_increment()
    assert tpm.da_status().failed_tries == 10


def test_a_wrong_auth_on_a_noda_object_does_not_count(provisioned: Provisioned) -> None:
    """Cross-check with tpm2-pytss directly: a wrong authValue on the attestation key (NODA) is refused
    without touching the DA counter. (The KEM key counts: tests/tpm/test_kem_pin.py.)"""
    from tpm2_pytss import ESAPI, TSS2_Exception
    from tpm2_pytss.constants import TPM2_ALG
    from tpm2_pytss.types import TPM2B_DATA, TPM2B_PRIVATE, TPM2B_PUBLIC, TPMT_SIG_SCHEME

    tpm, keys = provisioned.tpm, provisioned.keys
    tpm.close()
    with ESAPI(provisioned.swtpm.tcti) as esys:
        srk = esys.tr_from_tpmpublic(0x81000001)
        public, _ = TPM2B_PUBLIC.unmarshal(keys.ak.public)
        private, _ = TPM2B_PRIVATE.unmarshal(keys.ak.private)
        handle = esys.load(srk, private, public)
        esys.tr_set_auth(handle, b"wrong")
        for _ in range(12):
            with pytest.raises(TSS2_Exception):
                esys.certify(handle, handle, TPM2B_DATA(b""), TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL))
        esys.flush_context(handle)
    assert provisioned.reopen().da_status().failed_tries == 0


def test_an_unclean_stop_after_pin_use_costs_one_try_and_an_orderly_one_does_not(
    provisioned: Provisioned,
) -> None:
    tpm, sw = provisioned.tpm, provisioned.swtpm
    dek = tpm.seal(b"dek", PIN)
    tpm.unseal(dek, PIN)
    tpm.close()  # TPM2_Shutdown(STATE)
    sw.kill()
    sw.start()
    tpm = provisioned.reopen()
    assert tpm.da_status().failed_tries == 0
    tpm.unseal(dek, PIN)
    sw.kill()  # power cut: no Shutdown
    sw.start()
    assert (
        provisioned.reopen().da_status().failed_tries == 1
    )  # FACTS.md pitfall; DESIGN sizes maxTries for it


def test_change_auth_moves_the_pin(provisioned: Provisioned) -> None:
    tpm = provisioned.tpm
    dek = tpm.seal(b"dek", PIN)
    pay = tpm.create_payment_key(PIN)
    with pytest.raises(TpmWrongPin):
        tpm.change_auth(dek, b"111111", b"135791")
    new_dek = tpm.change_auth(dek, PIN, b"135791")
    new_pay = tpm.change_auth(pay, PIN, b"135791")
    assert new_dek.public == dek.public
    assert new_pay.public == pay.public
    assert tpm.unseal(new_dek, b"135791") == b"dek"
    with pytest.raises(TpmWrongPin):
        tpm.unseal(new_dek, PIN)
    _, payer = tpm.load_hot_keys(tpm.change_auth(provisioned.kem, PIN, b"135791"), new_pay, b"135791")
    verify_raw(tpm.public_key(pay), payer.sign(b"new pin"), b"new pin")


def test_pin_shape_is_checked_before_the_tpm() -> None:
    from device_os.tpm.templates import check_pin as _check_pin

    for bad in (b"", b"1" * 33, b"1234\x00"):
        with pytest.raises(ValueError, match="PIN"):
            _check_pin(bad)


# --- NV counter -------------------------------------------------------------------------------------------


def test_counter_survives_sigkill_and_is_not_orderly(provisioned: Provisioned) -> None:
    tpm, sw = provisioned.tpm, provisioned.swtpm
    start = tpm.counter_read()
    values = [tpm.counter_increment() for _ in range(5)]
    assert values == list(range(start + 1, start + 6))
    sw.kill()  # no Shutdown, adapter still open: a power cut
    sw.start()
    tpm = provisioned.reopen()
    assert tpm.counter_read() == start + 5
    out = subprocess.run(
        ["tpm2_nvreadpublic", "-T", sw.tcti, hex(COUNTER_INDEX)], capture_output=True, text=True, check=True
    ).stdout
    attributes = int(out.split("attributes:")[1].split("value:")[1].split()[0], 16)  # TPMA_NV, Part 2 §13.4
    assert (attributes >> 4) & 0xF == 1  # TPM_NT_COUNTER
    assert not attributes & (1 << 26)  # TPMA_NV_ORDERLY clear: every increment reaches NV
    assert attributes & (1 << 25)  # TPMA_NV_NO_DA


def test_counter_increment_is_one_command(provisioned: Provisioned) -> None:
    tpm = provisioned.reopen()
    tpm.counter_read()
    before = tpm.commands
    tpm.counter_increment()
    assert tpm.commands - before == 1
    assert tpm.recent_commands()[-1] == "NV_Increment"


# --- hot keys, HPKE, the purchase path and the slot plan --------------------------------------------------


def test_content_key_sealed_with_cryptography_hpke_opens_with_the_tpm_key(provisioned: Provisioned) -> None:
    from cryptography.hazmat.primitives import hpke as c_hpke

    tpm = provisioned.tpm
    pay = tpm.create_payment_key(PIN)
    kem, _ = tpm.load_hot_keys(provisioned.kem, pay, PIN)
    info = hpke.content_key_info("ord_123")
    content_key = os.urandom(32)
    suite = c_hpke.Suite(c_hpke.KEM.P256, c_hpke.KDF.HKDF_SHA256, c_hpke.AEAD.AES_128_GCM)
    sealed = suite.encrypt(content_key, kem.public_key(), info=info)
    before = tpm.commands
    assert hpke.open(kem, sealed, info=info) == content_key
    assert tpm.commands - before == 1
    assert tpm.recent_commands()[-1] == "ECDH_ZGen"
    with pytest.raises(hpke.HpkeError):
        hpke.open(kem, sealed, info=hpke.content_key_info("ord_124"))


def test_purchase_hot_path_is_exactly_three_commands_even_after_cold_work(provisioned: Provisioned) -> None:
    tpm, keys = provisioned.tpm, provisioned.keys
    pay = tpm.create_payment_key(PIN)
    dek = tpm.seal(b"dek", PIN)
    kem, payer = tpm.load_hot_keys(provisioned.kem, pay, PIN)
    tpm.counter_read()
    peer = ec.generate_private_key(ec.SECP256R1()).public_key()

    def purchase() -> None:
        before = tpm.commands
        kem.exchange(ec.ECDH(), peer)
        payer.sign(b"payment")
        tpm.counter_increment()
        assert tpm.recent_commands()[-3:] == ["ECDH_ZGen", "Sign", "NV_Increment"], str(
            tpm.recent_commands()[-20:]
        )
        assert tpm.commands - before == 3

    purchase()
    # Cold operations that need more than the one free slot evict and reload the hot keys.
    assert tpm.unseal(dek, PIN) == b"dek"
    purchase()
    evidence = tpm.certify(keys.ak, pay, b"nonce", pin=PIN)
    assert evidence.certified_public == pay.public
    purchase()
    tpm.seal(b"x", PIN)
    tpm.create_payment_key(PIN)
    purchase()
    tpm.unload_hot_keys()
    with pytest.raises(KeyNotLoaded):
        payer.sign(b"late")
    with pytest.raises(KeyNotLoaded):
        kem.exchange(ec.ECDH(), peer)


def test_hot_key_sign_with_a_wrong_pin_counts(provisioned: Provisioned) -> None:
    tpm = provisioned.tpm
    pay = tpm.create_payment_key(PIN)
    _, payer = tpm.load_hot_keys(
        provisioned.kem, pay, b"000000"
    )  # Load needs only the SRK: the PIN is checked at use
    with pytest.raises(TpmWrongPin) as wrong:
        payer.sign(b"x")
    assert wrong.value.tries_left == 9


def test_calls_from_many_threads_are_serialized(provisioned: Provisioned) -> None:
    tpm = provisioned.tpm
    pay = tpm.create_payment_key(PIN)
    _, payer = tpm.load_hot_keys(provisioned.kem, pay, PIN)
    errors: list[BaseException] = []
    start = tpm.counter_read()

    def work(i: int) -> None:
        try:
            for j in range(5):
                data = f"{i}-{j}".encode()
                verify_raw(payer.public_key(), payer.sign(data), data)
                tpm.counter_increment()
                tpm.da_status()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert tpm.counter_read() == start + 30


def test_unix_socket_tcti(provisioned: Provisioned, swtpm_factory: SwtpmFactory) -> None:
    sw = swtpm_factory(transport="unix")
    with Tpm.open(sw.tcti) as tpm:
        keys = tpm.provision(None)
        assert tpm.public_key(keys.ak) != provisioned.tpm.public_key(provisioned.keys.ak)


# --- errors -----------------------------------------------------------------------------------------------


def test_unreachable_tpm_is_tpm_unavailable(swtpm: SwtpmInstance) -> None:
    tcti = swtpm.tcti
    swtpm.kill()
    with pytest.raises(TpmUnavailable):
        Tpm.open(tcti)


def test_a_tpm_that_dies_under_an_open_adapter(provisioned: Provisioned) -> None:
    tpm = provisioned.tpm
    provisioned.swtpm.kill()
    with pytest.raises(TpmUnavailable):
        tpm.counter_increment()
    with pytest.raises(TpmUnavailable):
        tpm.counter_increment()  # the value is forgotten after a failure: the retry needs a read first
    tpm.close()  # best effort, does not raise
    with pytest.raises(TpmUnavailable):
        tpm.counter_read()


def test_damaged_blobs_are_bad_blob(provisioned: Provisioned) -> None:
    tpm = provisioned.tpm
    dek = tpm.seal(b"dek", PIN)
    flipped = bytearray(dek.private)
    flipped[20] ^= 1
    with pytest.raises(BadBlob):
        tpm.unseal(KeyBlob(dek.public, bytes(flipped)), PIN)
    with pytest.raises(BadBlob):
        tpm.public_key(dek)  # a sealed object has no public key
    with pytest.raises(TpmError):
        tpm.load_hot_keys(dek, dek, PIN)


def test_close_sends_an_orderly_shutdown(provisioned: Provisioned) -> None:
    tpm = provisioned.tpm
    tpm.close()
    assert tpm.recent_commands()[-1] == "Shutdown"
    tpm.close()  # idempotent


def test_payment_signature_is_ecdsa_sha256_over_the_data(provisioned: Provisioned) -> None:
    tpm = provisioned.tpm
    _, payer = tpm.load_hot_keys(provisioned.kem, tpm.create_payment_key(PIN), PIN)
    signature = payer.sign(b"abc")
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    digest = hashlib.sha256(b"abc").digest()
    payer.public_key().verify(encode_dss_signature(r, s), digest, ec.ECDSA(Prehashed(hashes.SHA256())))


# --- the TCTI counter against the wire --------------------------------------------------------------------


def test_tcti_counter_matches_the_wire_and_tpm2_tools(provisioned: Provisioned) -> None:
    """A relay in front of swtpm parses every command and response on the wire. The adapter's counter
    equals it exactly, command by command (resubmissions after TPM_RC_RETRY counted apart on both sides),
    from open to close; tpm2-tools through the same relay is seen the same way."""
    from device_os.tpm.tcti import command_name
    from tests.support.tpm_proxy import TpmWireCounter

    port = provisioned.swtpm.port
    assert port is not None
    provisioned.tpm.close()
    wire = TpmWireCounter(port)
    try:
        tpm = Tpm.open(wire.tcti)
        keys = provisioned.keys
        pay = tpm.create_payment_key(PIN)
        dek = tpm.seal(b"dek", PIN)
        kem, payer = tpm.load_hot_keys(provisioned.kem, pay, PIN)
        for _ in range(3):
            kem.exchange(
                ec.ECDH(), kem.public_key()
            )  # the first DA-protected use: libtpms answers RETRY once
            payer.sign(b"p")
            tpm.counter_increment()
        tpm.unseal(dek, PIN)
        tpm.certify(keys.ak, provisioned.kem, b"nonce", pin=PIN)
        with pytest.raises(TpmWrongPin):
            tpm.unseal(dek, b"000000")
        tpm.close()
        assert wire.count == tpm.commands
        assert wire.retries == tpm.retries == 1
        assert [command_name(c) for c in wire.codes[-len(tpm.recent_commands()) :]] == tpm.recent_commands()
        before = wire.count
        subprocess.run(["tpm2_getrandom", "-T", wire.tcti, "8", "--hex"], check=True, capture_output=True)
        assert wire.count > before
        assert command_name(wire.codes[-1]) == "GetRandom"
    finally:
        wire.close()


def test_the_adapter_recovers_when_the_tpm_restarts_under_it(provisioned: Provisioned) -> None:
    """swtpm killed and started again while the adapter holds hot keys: the first call reports
    TpmUnavailable, the next one reconnects, reloads the hot keys and works."""
    tpm, sw = provisioned.tpm, provisioned.swtpm
    pay = tpm.create_payment_key(PIN)
    kem, payer = tpm.load_hot_keys(provisioned.kem, pay, PIN)
    value = tpm.counter_increment()
    sw.kill()
    sw.start()
    with pytest.raises(TpmUnavailable):
        payer.sign(b"x")
    verify_raw(payer.public_key(), payer.sign(b"y"), b"y")
    assert kem.exchange(ec.ECDH(), kem.public_key()) == kem.exchange(ec.ECDH(), kem.public_key())
    assert tpm.counter_increment() == value + 1
    before = tpm.commands
    kem.exchange(ec.ECDH(), kem.public_key())
    payer.sign(b"z")
    tpm.counter_increment()
    assert tpm.commands - before == 3


@pytest.mark.parametrize("encrypted", [True, False])
def test_pins_and_secrets_stay_off_the_wire_with_encrypted_sessions(
    provisioned: Provisioned, encrypted: bool
) -> None:
    """The salted session keeps every PIN and the sealed secret out of the bytes between host and TPM
    (the SPI bus on the board); with password sessions they are visible, which is what it protects from."""
    from tests.support.tpm_proxy import TpmWireCounter

    port = provisioned.swtpm.port
    assert port is not None
    provisioned.tpm.close()
    pin, new_pin, secret = b"862150", b"975310", b"S3cr3t-DEK-" + os.urandom(8).hex().encode()
    wire = TpmWireCounter(port)
    try:
        with Tpm.open(wire.tcti, encrypt_sessions=encrypted) as tpm:
            keys = provisioned.keys
            pay = tpm.create_payment_key(pin)
            dek = tpm.seal(secret, pin)
            assert tpm.unseal(dek, pin) == secret
            dek = tpm.change_auth(dek, pin, new_pin)
            assert tpm.unseal(dek, new_pin) == secret
            kem, payer = tpm.load_hot_keys(tpm.create_kem_key(pin), pay, pin)
            kem.exchange(ec.ECDH(), kem.public_key())
            payer.sign(b"payment")
            tpm.certify(keys.ak, pay, b"nonce", pin=pin)
            with pytest.raises(TpmWrongPin):
                tpm.unseal(dek, pin)
        wire_bytes = b"".join(wire.frames)
    finally:
        wire.close()
    visible = [value for value in (pin, new_pin, secret) if value in wire_bytes]
    assert visible == ([] if encrypted else [pin, new_pin, secret])


def test_leftover_sessions_are_flushed_at_open(provisioned: Provisioned) -> None:
    from tpm2_pytss import ESAPI
    from tpm2_pytss.constants import ESYS_TR, TPM2_ALG, TPM2_SE
    from tpm2_pytss.types import TPMT_SYM_DEF

    provisioned.tpm.close()
    tcti = provisioned.swtpm.tcti
    with ESAPI(tcti) as esys:  # a crashed process's sessions: ESAPI.close() does not flush them
        for kind in (TPM2_SE.POLICY, TPM2_SE.HMAC):
            esys.start_auth_session(
                ESYS_TR.NONE, ESYS_TR.NONE, kind, TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL), TPM2_ALG.SHA256
            )

    def loaded_sessions() -> list[str]:
        out = subprocess.run(
            ["tpm2_getcap", "-T", tcti, "handles-loaded-session"], capture_output=True, text=True, check=True
        ).stdout
        return [line for line in out.splitlines() if line.strip()]

    assert len(loaded_sessions()) == 2
    provisioned.reopen()
    assert loaded_sessions() == []


@pytest.mark.parametrize("tcti", ["device:/nonexistent/tpmrm0", "nosuchtcti:whatever"])
def test_a_tcti_that_cannot_load_is_tpm_unavailable(tcti: str) -> None:
    with pytest.raises(TpmUnavailable):
        Tpm.open(tcti)
