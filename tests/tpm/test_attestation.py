"""protocol.attestation (pure software, the center's side) against real evidence from swtpm: TPM2_Certify
verification and tampering, MakeCredential -> ActivateCredential, EK certificate chain and EK public."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hmac
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from device_os.tpm import KeyBlob, ProvisionedKeys, Tpm, TpmError
from protocol.attestation import (
    ALG_SHA1,
    ALG_SHA256,
    ALG_SHA384,
    ALG_SHA512,
    CertifyEvidence,
    check_ek_public,
    check_kem_key,
    check_payment_key,
    kdfa,
    make_credential,
    parse_attest,
    parse_public,
    verify_certify,
    verify_ek_certificate,
)
from protocol.attestation.credential import _make_credential_from_parts
from protocol.errors import AttestationError
from tests.support.swtpm import SwtpmInstance, SwtpmTemplate, new_instance

PIN = b"246810"


def _now() -> datetime.datetime:
    # The local CA's certificates are made at session start (notBefore = then): never a time before that.
    return datetime.datetime.now(datetime.UTC)


@dataclass
class Material:
    swtpm: SwtpmInstance
    tpm: Tpm
    keys: ProvisionedKeys
    kem: KeyBlob
    payment: KeyBlob
    kem_evidence: CertifyEvidence
    payment_evidence: CertifyEvidence
    ek_certificate: bytes
    ek_public: bytes


@pytest.fixture(scope="module")
def material(swtpm_template: SwtpmTemplate, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Material]:
    sw = new_instance(swtpm_template, tmp_path_factory.mktemp("attest"))
    tpm = Tpm.open(sw.tcti)
    keys = tpm.provision(None)
    kem, payment = tpm.create_kem_key(PIN), tpm.create_payment_key(PIN)
    yield Material(
        swtpm=sw,
        tpm=tpm,
        keys=keys,
        kem=kem,
        payment=payment,
        kem_evidence=tpm.certify(keys.ak, kem, b"kem-nonce", pin=PIN),
        payment_evidence=tpm.certify(keys.ak, payment, b"pay-nonce", pin=PIN),
        ek_certificate=tpm.ek_certificate(),
        ek_public=tpm.ek_public(),
    )
    tpm.close()
    sw.kill()


def _pem(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


# --- TPM2_Certify -----------------------------------------------------------------------------------------


@pytest.mark.swtpm
def test_certify_evidence_verifies(material: Material) -> None:
    kem = verify_certify(material.kem_evidence, nonce=b"kem-nonce", ak_public=material.keys.ak.public)
    assert check_kem_key(kem) == material.tpm.public_key(material.kem)
    pay = verify_certify(material.payment_evidence, nonce=b"pay-nonce")
    assert check_payment_key(pay) == material.tpm.public_key(material.payment)
    attest = parse_attest(material.kem_evidence.attest)
    assert attest.extra_data == b"kem-nonce"
    assert attest.certified_name == parse_public(material.kem.public).name
    # Evidence travels as JSON.
    assert CertifyEvidence.from_bytes(material.kem_evidence.to_bytes()) == material.kem_evidence


@pytest.mark.swtpm
def test_certify_name_matches_the_tpm_name(material: Material) -> None:
    from tpm2_pytss.types import TPM2B_PUBLIC

    public, _ = TPM2B_PUBLIC.unmarshal(material.kem.public)
    assert parse_public(material.kem.public).name == bytes(public.get_name())


@pytest.mark.swtpm
def test_kem_and_payment_key_policies_are_not_interchangeable(material: Material) -> None:
    kem = verify_certify(material.kem_evidence, nonce=b"kem-nonce")
    pay = verify_certify(material.payment_evidence, nonce=b"pay-nonce")
    with pytest.raises(AttestationError):
        check_payment_key(kem)  # a decryption key
    with pytest.raises(AttestationError):
        check_kem_key(pay)


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


@pytest.mark.swtpm
@pytest.mark.parametrize(
    "tamper",
    [
        "attest-nonce",
        "attest-name",
        "attest-trailing",
        "signature-r",
        "signature-s",
        "signature-short",
        "swap-certified-key",
        "swap-ak",
        "wrong-nonce",
        "pinned-ak-mismatch",
    ],
)
def test_tampered_certify_evidence_is_rejected(material: Material, tamper: str) -> None:
    ev, nonce, pinned = material.kem_evidence, b"kem-nonce", None
    if tamper == "attest-nonce":
        ev = dataclasses.replace(ev, attest=ev.attest.replace(b"kem-nonce", b"kem-nonc3"))
    elif tamper == "attest-name":
        ev = dataclasses.replace(ev, attest=_flip(ev.attest, len(ev.attest) - 40))
    elif tamper == "attest-trailing":
        ev = dataclasses.replace(ev, attest=ev.attest + b"\x00")
    elif tamper == "signature-r":
        ev = dataclasses.replace(ev, signature=_flip(ev.signature, 5))
    elif tamper == "signature-s":
        ev = dataclasses.replace(ev, signature=_flip(ev.signature, 40))
    elif tamper == "signature-short":
        ev = dataclasses.replace(ev, signature=ev.signature[:63])
    elif tamper == "swap-certified-key":  # claim the AK certified the payment key with the KEM's attestation
        ev = dataclasses.replace(ev, certified_public=material.payment.public)
    elif tamper == "swap-ak":  # a software key posing as the AK cannot have signed
        ev = dataclasses.replace(ev, ak_public=material.payment_evidence.certified_public)
    elif tamper == "wrong-nonce":
        nonce = b"other-nonce"
    elif tamper == "pinned-ak-mismatch":
        pinned = material.payment.public
    with pytest.raises(AttestationError):
        verify_certify(ev, nonce=nonce, ak_public=pinned)


def test_certify_evidence_json_is_strict() -> None:
    with pytest.raises(AttestationError):
        CertifyEvidence.from_json({"attest": "AA"})
    with pytest.raises(AttestationError):
        CertifyEvidence.from_json({"attest": 1, "signature": "", "certified_public": "", "ak_public": ""})
    with pytest.raises(AttestationError):
        CertifyEvidence.from_bytes(b"not json")


# --- parsers ----------------------------------------------------------------------------------------------


@pytest.mark.swtpm
def test_public_parser_is_strict(material: Material) -> None:
    raw = material.kem.public
    parse_public(raw)
    for bad in (raw[:-1], raw + b"\x00", b"\x00\x01\x00", struct.pack(">H", len(raw)) + raw[2:-1]):
        with pytest.raises(AttestationError):
            parse_public(bad)
    ek = parse_public(material.ek_public)
    assert ek.key_bits == 2048


@pytest.mark.swtpm
def test_attest_parser_is_strict(material: Material) -> None:
    attest = material.kem_evidence.attest
    for bad in (attest[:-1], b"\x00" + attest[1:], attest[:4] + b"\x80\x18" + attest[6:]):
        with pytest.raises(AttestationError):
            parse_attest(bad)


# --- MakeCredential / ActivateCredential ------------------------------------------------------------------


def _kdfa_loop(hash_name: str, key: bytes, label: bytes, u: bytes, v: bytes, bits: int) -> bytes:
    """The hand-written KDFa that `kdfa` had before it moved to cryptography's KBKDFHMAC (the oracle)."""
    out, counter = b"", 1
    while len(out) < bits // 8:
        msg = counter.to_bytes(4, "big") + label + b"\x00" + u + v + bits.to_bytes(4, "big")
        out += hmac.new(key, msg, hash_name).digest()
        counter += 1
    return out[: bits // 8]


@given(
    alg=st.sampled_from(
        [(ALG_SHA1, "sha1"), (ALG_SHA256, "sha256"), (ALG_SHA384, "sha384"), (ALG_SHA512, "sha512")]
    ),
    key=st.binary(max_size=80),
    label=st.binary(max_size=40).filter(lambda b: b"\x00" not in b),
    u=st.binary(max_size=70),
    v=st.binary(max_size=70),
    nbytes=st.integers(min_value=0, max_value=200),
)
def test_kdfa_is_the_counter_mode_loop_byte_for_byte(
    alg: tuple[int, str], key: bytes, label: bytes, u: bytes, v: bytes, nbytes: int
) -> None:
    assert kdfa(alg[0], key, label, u, v, nbytes * 8) == _kdfa_loop(alg[1], key, label, u, v, nbytes * 8)


def test_kdfa_refuses_what_it_cannot_do() -> None:
    with pytest.raises(AttestationError):
        kdfa(ALG_SHA256, b"k", b"L", b"", b"", 12)
    with pytest.raises(AttestationError):
        kdfa(0x0010, b"k", b"L", b"", b"", 128)  # TPM_ALG_NULL


def test_kdfa_matches_tpm2_pytss() -> None:
    from tpm2_pytss.internal.crypto import _kdfa

    key = bytes(range(32))
    for label, u, v, bits in ((b"STORAGE", b"\x00\x0bname", b"", 128), (b"INTEGRITY", b"", b"", 256)):
        assert kdfa(ALG_SHA256, key, label, u, v, bits) == _kdfa(ALG_SHA256, key, label, u, v, bits)


@pytest.mark.swtpm
def test_make_credential_matches_tpm2_pytss_byte_for_byte(
    material: Material, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tpm2_pytss.utils as tss_utils
    from tpm2_pytss.types import TPM2B_PUBLIC

    seed, encrypted_seed = b"\x42" * 32, b"\x99" * 256
    monkeypatch.setattr(tss_utils, "_generate_seed", lambda public, label: (seed, encrypted_seed))
    name = parse_public(material.keys.ak.public).name
    ek, _ = TPM2B_PUBLIC.unmarshal(material.ek_public)
    theirs = tss_utils.make_credential(ek, b"s" * 32, name)
    ours = _make_credential_from_parts(
        parse_public(material.ek_public), name, b"s" * 32, seed, encrypted_seed
    )
    assert ours == (theirs[0].marshal(), theirs[1].marshal())


@pytest.mark.swtpm
def test_credential_activation_round_trip(material: Material) -> None:
    name = parse_public(material.keys.ak.public).name
    blob, secret = make_credential(material.ek_public, name, b"challenge-" + b"x" * 22)
    assert material.tpm.activate_credential(material.keys.ak, blob, secret) == b"challenge-" + b"x" * 22


@pytest.mark.swtpm
def test_credential_for_another_ek_or_another_key_is_refused(material: Material) -> None:
    ek = parse_public(material.ek_public)
    # A look-alike EK public area (same template) with a software RSA key: not this TPM's EK.
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    modulus = other.public_numbers().n.to_bytes(256, "big")
    raw = ek.raw[: -(2 + 256)] + struct.pack(">H", 256) + modulus
    fake_ek = struct.pack(">H", len(raw)) + raw
    name = parse_public(material.keys.ak.public).name
    blob, secret = make_credential(fake_ek, name, b"s" * 16)
    with pytest.raises(TpmError):
        material.tpm.activate_credential(material.keys.ak, blob, secret)
    # The right EK, but the credential names another object than the AK.
    blob, secret = make_credential(material.ek_public, parse_public(material.kem.public).name, b"s" * 16)
    with pytest.raises(TpmError):
        material.tpm.activate_credential(material.keys.ak, blob, secret)
    # A tampered credential blob.
    blob, secret = make_credential(material.ek_public, name, b"s" * 16)
    with pytest.raises(TpmError):
        material.tpm.activate_credential(material.keys.ak, _flip(blob, 10), secret)


def test_make_credential_input_checks() -> None:
    with pytest.raises(AttestationError):
        make_credential(b"\x00\x02\x00\x01", b"\x00\x0b" + b"\x00" * 32, b"s")


# --- EK certificate ---------------------------------------------------------------------------------------


@pytest.mark.swtpm
def test_ek_certificate_chain_verifies_against_the_local_ca(material: Material) -> None:
    template = material.swtpm.template
    cert = verify_ek_certificate(
        material.ek_certificate, [_pem(template.ca_cert)], [_pem(template.intermediate_cert)], now=_now()
    )
    ek = check_ek_public(material.ek_public, cert)
    assert ek.name == parse_public(material.ek_public).name


def _self_signed_ca() -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not-the-ca")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(_now() - datetime.timedelta(days=1))
        .not_valid_after(_now() + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, False, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )


@pytest.mark.swtpm
def test_ek_certificate_chain_failures(material: Material) -> None:
    template = material.swtpm.template
    root, inter = _pem(template.ca_cert), _pem(template.intermediate_cert)
    with pytest.raises(AttestationError):
        verify_ek_certificate(material.ek_certificate, [_self_signed_ca()], [inter], now=_now())
    with pytest.raises(AttestationError):
        verify_ek_certificate(material.ek_certificate, [root], [], now=_now())  # intermediate missing
    with pytest.raises(AttestationError):
        verify_ek_certificate(
            material.ek_certificate, [root], [inter], now=_now() - datetime.timedelta(days=2)
        )
    with pytest.raises(AttestationError):
        verify_ek_certificate(material.ek_certificate, [], [inter], now=_now())
    with pytest.raises(AttestationError):
        verify_ek_certificate(
            _flip(material.ek_certificate, len(material.ek_certificate) - 5), [root], [inter], now=_now()
        )
    with pytest.raises(AttestationError):
        verify_ek_certificate(b"junk", [root], [inter], now=_now())


@pytest.mark.swtpm
def test_ek_public_must_match_the_certificate(material: Material) -> None:
    template = material.swtpm.template
    cert = verify_ek_certificate(
        material.ek_certificate, [_pem(template.ca_cert)], [_pem(template.intermediate_cert)], now=_now()
    )
    ek = parse_public(material.ek_public)
    raw = ek.raw[:-1] + bytes([ek.raw[-1] ^ 1])  # another modulus
    with pytest.raises(AttestationError):
        check_ek_public(struct.pack(">H", len(raw)) + raw, cert)
    with pytest.raises(AttestationError):
        check_ek_public(material.keys.ak.public, cert)  # not an EK at all


# --- the parsers fail closed on anything ------------------------------------------------------------------


@given(st.binary(max_size=300))
def test_parsers_raise_only_attestation_error(data: bytes) -> None:
    for parse in (parse_public, parse_attest):
        with contextlib.suppress(AttestationError):
            parse(data)


@given(st.binary(max_size=200))
def test_certify_evidence_from_bytes_raises_only_attestation_error(data: bytes) -> None:
    with contextlib.suppress(AttestationError):
        CertifyEvidence.from_bytes(data)


@given(st.binary(min_size=1, max_size=64), st.binary(min_size=1, max_size=64))
def test_key_blob_round_trip(public: bytes, private: bytes) -> None:
    blob = KeyBlob(struct.pack(">H", len(public)) + public, struct.pack(">H", len(private)) + private)
    assert KeyBlob.from_bytes(blob.to_bytes()) == blob
    assert KeyBlob.from_json(blob.to_json()) == blob
