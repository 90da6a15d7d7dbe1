"""HPKE (RFC 9180 base mode, suite 0x0010/0x0001/0x0001): RFC vectors, two independent implementations, a key
that can only exchange(), round trips and every way a sealed blob can be bad."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
from hypothesis import given, settings
from hypothesis import strategies as st
from pyhpke import AEADId, CipherSuite, KDFId, KEMId, KEMKey

from protocol import _hpke, hpke
from protocol.errors import HpkeError

VECTORS = Path(__file__).parent.parent / "vectors" / "rfc9180-a3-base.json"
P256_P = 2**256 - 2**224 + 2**192 + 2**96 - 1

CRYPTOGRAPHY_SUITE = Suite(KEM.P256, KDF.HKDF_SHA256, AEAD.AES_128_GCM)
PYHPKE_SUITE = CipherSuite.new(KEMId.DHKEM_P256_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.AES128_GCM)

# One recipient for the whole module (hypothesis forbids function-scoped fixtures in @given tests).
RECIPIENT = ec.generate_private_key(ec.SECP256R1())
OTHER = ec.generate_private_key(ec.SECP256R1())
INFO = hpke.content_key_info("ord_1")


def h(text: str) -> bytes:
    return bytes.fromhex(text)


@pytest.fixture(scope="module")
def vector() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS.read_text())
    assert (data["mode"], data["kem_id"], data["kdf_id"], data["aead_id"]) == (0, 0x10, 1, 1)
    return data


def private_key(hex_scalar: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int(hex_scalar, 16), ec.SECP256R1())


class ExchangeOnlyKey:
    """A recipient shaped like the TPM's KEM key: public_key() and exchange() only, counting ECDH calls."""

    __slots__ = ("_key", "exchanges")

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key
        self.exchanges = 0

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._key.public_key()

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        assert isinstance(algorithm, ec.ECDH)
        self.exchanges += 1
        return self._key.exchange(algorithm, peer_public_key)


# --- RFC 9180 Appendix A.3.1 ----------------------------------------------------------------------


def test_vector_derive_key_pair(vector: dict[str, Any]) -> None:
    """§7.1.3 DeriveKeyPair reproduces the published skEm/skRm and pkEm/pkRm from ikmE/ikmR."""
    for ikm, sk, pk in (("ikmE", "skEm", "pkEm"), ("ikmR", "skRm", "pkRm")):
        key = _hpke.derive_key_pair(h(vector[ikm]))
        assert key.private_numbers().private_value.to_bytes(32, "big") == h(vector[sk])
        assert _hpke.serialize_public_key(key.public_key()) == h(vector[pk])


def test_vector_key_schedule_intermediates(vector: dict[str, Any]) -> None:
    sk_e, sk_r = private_key(vector["skEm"]), private_key(vector["skRm"])
    shared_secret, enc = _hpke.encap_from_parts(sk_r.public_key(), sk_e)
    assert enc == h(vector["enc"])
    assert shared_secret == h(vector["shared_secret"])
    assert _hpke.decap(enc, sk_r) == shared_secret
    ctx = _hpke.key_schedule(shared_secret, h(vector["info"]))
    assert ctx.key_schedule_context == h(vector["key_schedule_context"])
    assert ctx.secret == h(vector["secret"])
    assert ctx.key == h(vector["key"])
    assert ctx.base_nonce == h(vector["base_nonce"])
    assert ctx.exporter_secret == h(vector["exporter_secret"])


def test_vector_every_listed_encryption(vector: dict[str, Any]) -> None:
    """The context's nonce rule (§5.2) reproduces every published sequence number, not only 0."""
    ctx = _hpke.key_schedule(h(vector["shared_secret"]), h(vector["info"]))
    assert len(vector["encryptions"]) >= 5
    for item in vector["encryptions"]:
        seq = item["sequence_number"]
        assert ctx.nonce(seq) == h(item["nonce"])
        assert ctx.seal(h(item["pt"]), h(item["aad"]), seq) == h(item["ct"])
        assert ctx.open(h(item["ct"]), h(item["aad"]), seq) == h(item["pt"])


def test_vector_single_shot_seal_and_open(vector: dict[str, Any]) -> None:
    """Sequence 0 is single-shot: seal from parts with skEm gives enc || ct; open with skRm gives pt."""
    item = vector["encryptions"][0]
    assert item["sequence_number"] == 0
    sk_r = private_key(vector["skRm"])
    sealed = hpke._seal_from_parts(
        sk_r.public_key(),
        h(item["pt"]),
        info=h(vector["info"]),
        aad=h(item["aad"]),
        ephemeral_private_key=private_key(vector["skEm"]),
    )
    assert sealed == h(vector["enc"]) + h(item["ct"])
    assert hpke.open(sk_r, sealed, info=h(vector["info"]), aad=h(item["aad"])) == h(item["pt"])
    opened = hpke.open(ExchangeOnlyKey(sk_r), sealed, info=h(vector["info"]), aad=h(item["aad"]))
    assert opened == h(item["pt"])


# --- the info strings (DESIGN.md "Wire formats") --------------------------------------------------


def test_info_strings_are_label_nul_order_id() -> None:
    assert hpke.content_key_info("ord_42") == b"coffer/content-key/v1\x00ord_42"
    assert hpke.payment_info("ord_42") == b"coffer/payment/v1\x00ord_42"
    assert hpke.content_key_info("é") == b"coffer/content-key/v1\x00\xc3\xa9"
    assert hpke.content_key_info("ord_1") != hpke.payment_info("ord_1")
    with pytest.raises(ValueError, match="NUL"):
        hpke.content_key_info("a\x00b")


# --- interoperability -----------------------------------------------------------------------------


def test_cryptography_suite_seals_we_open() -> None:
    """cryptography's public hpke.Suite has no aad parameter: the empty aad (the content-key case)."""
    plaintext = b"\x01" * 32
    sealed = CRYPTOGRAPHY_SUITE.encrypt(plaintext, RECIPIENT.public_key(), info=INFO)
    assert len(sealed) == hpke.ENC_SIZE + len(plaintext) + 16
    assert hpke.open(RECIPIENT, sealed, info=INFO) == plaintext
    assert hpke.open(ExchangeOnlyKey(RECIPIENT), sealed, info=INFO) == plaintext


def test_we_seal_cryptography_suite_opens() -> None:
    plaintext = b"payment jws" * 50
    sealed = hpke.seal(RECIPIENT.public_key(), plaintext, info=hpke.payment_info("ord_9"))
    assert CRYPTOGRAPHY_SUITE.decrypt(sealed, RECIPIENT, info=hpke.payment_info("ord_9")) == plaintext


def test_pyhpke_seals_we_open_with_aad() -> None:
    pk = KEMKey.from_pyca_cryptography_key(RECIPIENT.public_key())
    enc, ctx = PYHPKE_SUITE.create_sender_context(pk, INFO)
    ct = ctx.seal(b"content key bytes", b"some aad")
    assert hpke.open(ExchangeOnlyKey(RECIPIENT), enc + ct, info=INFO, aad=b"some aad") == b"content key bytes"


def test_we_seal_pyhpke_opens_with_aad() -> None:
    sealed = hpke.seal(RECIPIENT.public_key(), b"hello", info=INFO, aad=b"bound")
    sk = KEMKey.from_pyca_cryptography_key(RECIPIENT)
    ctx = PYHPKE_SUITE.create_recipient_context(sealed[: hpke.ENC_SIZE], sk, INFO)
    assert ctx.open(sealed[hpke.ENC_SIZE :], b"bound") == b"hello"


def test_open_needs_only_public_key_and_one_exchange() -> None:
    """The TPM hot path: one ECDH (TPM2_ECDH_ZGen) per open, no private-key export."""
    key = ExchangeOnlyKey(RECIPIENT)
    assert not hasattr(key, "private_numbers")
    assert not hasattr(key, "private_bytes")
    sealed = hpke.seal(RECIPIENT.public_key(), b"k" * 32, info=INFO)
    assert hpke.open(key, sealed, info=INFO) == b"k" * 32
    assert key.exchanges == 1


def test_seal_is_randomized() -> None:
    a = hpke.seal(RECIPIENT.public_key(), b"same", info=INFO)
    b = hpke.seal(RECIPIENT.public_key(), b"same", info=INFO)
    assert a[: hpke.ENC_SIZE] != b[: hpke.ENC_SIZE]
    assert a != b


def test_layout_enc_is_uncompressed_ephemeral_point() -> None:
    sealed = hpke.seal(RECIPIENT.public_key(), b"x" * 32, info=INFO)
    assert len(sealed) == hpke.ENC_SIZE + 32 + 16 == 113
    assert sealed[0] == 0x04
    ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), sealed[: hpke.ENC_SIZE])


@settings(max_examples=50, deadline=None)
@given(plaintext=st.binary(max_size=2048), info=st.binary(max_size=64), aad=st.binary(max_size=64))
def test_round_trip(plaintext: bytes, info: bytes, aad: bytes) -> None:
    sealed = hpke.seal(RECIPIENT.public_key(), plaintext, info=info, aad=aad)
    assert len(sealed) == hpke.OVERHEAD + len(plaintext)
    assert hpke.open(ExchangeOnlyKey(RECIPIENT), sealed, info=info, aad=aad) == plaintext


@settings(max_examples=30, deadline=None)
@given(plaintext=st.binary(max_size=256), index=st.integers(min_value=0), bit=st.integers(0, 7))
def test_any_flipped_bit_fails(plaintext: bytes, index: int, bit: int) -> None:
    sealed = bytearray(hpke.seal(RECIPIENT.public_key(), plaintext, info=INFO))
    sealed[index % len(sealed)] ^= 1 << bit
    with pytest.raises(HpkeError):
        hpke.open(RECIPIENT, bytes(sealed), info=INFO)


# --- rejection ------------------------------------------------------------------------------------


@pytest.fixture
def sealed() -> bytes:
    return hpke.seal(RECIPIENT.public_key(), b"k" * 32, info=INFO, aad=b"aad")


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def _off_curve_enc() -> bytes:
    x = RECIPIENT.public_key().public_numbers().x
    y = RECIPIENT.public_key().public_numbers().y
    return b"\x04" + x.to_bytes(32, "big") + ((y + 1) % P256_P).to_bytes(32, "big")


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda s: b"", id="empty"),
        pytest.param(lambda s: s[: hpke.ENC_SIZE], id="enc-only"),
        pytest.param(lambda s: s[: hpke.OVERHEAD - 1], id="shorter-than-overhead"),
        pytest.param(lambda s: s[:-1], id="truncated-tag"),
        pytest.param(lambda s: s + b"\x00", id="extra-byte"),
        pytest.param(lambda s: _flip(s, 0), id="enc-prefix"),
        pytest.param(lambda s: _flip(s, 10), id="enc-x"),
        pytest.param(lambda s: _flip(s, 64), id="enc-y"),
        pytest.param(lambda s: _flip(s, hpke.ENC_SIZE), id="ciphertext"),
        pytest.param(lambda s: _flip(s, len(s) - 1), id="tag"),
        pytest.param(lambda s: _off_curve_enc() + s[hpke.ENC_SIZE :], id="off-curve-enc"),
        pytest.param(lambda s: b"\x04" + b"\x00" * 64 + s[hpke.ENC_SIZE :], id="zero-point-enc"),
        pytest.param(lambda s: b"\x04" + b"\xff" * 64 + s[hpke.ENC_SIZE :], id="coordinates-above-p"),
        pytest.param(lambda s: b"\x00" * 65 + s[hpke.ENC_SIZE :], id="infinity-enc"),
        pytest.param(
            lambda s: b"\x02" + s[1:33] + b"\x00" * 32 + s[hpke.ENC_SIZE :], id="compressed-prefix-padded"
        ),
    ],
)
def test_tampered_sealed_is_hpke_error(sealed: bytes, mutate: Any) -> None:
    with pytest.raises(HpkeError):
        hpke.open(RECIPIENT, mutate(sealed), info=INFO, aad=b"aad")
    with pytest.raises(HpkeError):
        hpke.open(ExchangeOnlyKey(RECIPIENT), mutate(sealed), info=INFO, aad=b"aad")


def test_compressed_enc_is_rejected_even_if_valid() -> None:
    """A compressed (33-byte) point is a valid SEC1 encoding but not DHKEM(P-256)'s enc."""
    sealed = hpke.seal(RECIPIENT.public_key(), b"k" * 32, info=INFO)
    point = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), sealed[: hpke.ENC_SIZE])
    compressed = point.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    with pytest.raises(_hpke.InvalidEncError):
        _hpke.deserialize_public_key(compressed)
    with pytest.raises(HpkeError):
        hpke.open(RECIPIENT, compressed + sealed[hpke.ENC_SIZE :], info=INFO)


def test_wrong_info_aad_or_recipient_is_hpke_error(sealed: bytes) -> None:
    assert hpke.open(RECIPIENT, sealed, info=INFO, aad=b"aad") == b"k" * 32
    for info, aad, key in (
        (hpke.content_key_info("ord_2"), b"aad", RECIPIENT),
        (hpke.payment_info("ord_1"), b"aad", RECIPIENT),
        (INFO, b"", RECIPIENT),
        (INFO, b"aaD", RECIPIENT),
        (INFO, b"aad", OTHER),
    ):
        with pytest.raises(HpkeError) as caught:
            hpke.open(key, sealed, info=info, aad=aad)
        assert str(caught.value) == "HPKE open failed"  # opaque: the message never says which check failed


def test_enc_of_another_valid_point_is_hpke_error(sealed: bytes) -> None:
    other_point = _hpke.serialize_public_key(OTHER.public_key())
    with pytest.raises(HpkeError):
        hpke.open(RECIPIENT, other_point + sealed[hpke.ENC_SIZE :], info=INFO, aad=b"aad")


def test_seal_refuses_a_non_p256_recipient() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    with pytest.raises(ValueError, match="P-256"):
        hpke.seal(p384, b"x", info=INFO)


def test_open_refuses_a_non_p256_recipient(sealed: bytes) -> None:
    """A key of the wrong curve is a programming error, not a bad blob: ValueError, not HpkeError."""
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ValueError, match="P-256"):
        hpke.open(p384, sealed, info=INFO, aad=b"aad")


def test_exchange_returning_a_short_secret_is_refused(sealed: bytes) -> None:
    """A TPM adapter must hand back the full 32-byte x-coordinate; a stripped one is never silently padded."""

    class Short(ExchangeOnlyKey):
        def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
            return super().exchange(algorithm, peer_public_key)[1:]

    with pytest.raises(ValueError, match="32-byte"):
        hpke.open(Short(RECIPIENT), sealed, info=INFO, aad=b"aad")


def test_aesgcm_of_the_vector_matches_our_context(vector: dict[str, Any]) -> None:
    """Independent of our Context: AES-128-GCM with the published key and nonce gives the published ct."""
    item = vector["encryptions"][0]
    ct = AESGCM(h(vector["key"])).encrypt(h(vector["base_nonce"]), h(item["pt"]), h(item["aad"]))
    assert ct == h(item["ct"])


def test_benchmark_runs_and_reports_every_case(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import hpke as bench_hpke

    assert bench_hpke.main(["--seconds", "0.01", "--payload-bytes", "16"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    cases = {(r["impl"], r["op"]) for r in records}
    assert {
        ("coffer", "seal"),
        ("coffer", "open"),
        ("cryptography", "seal"),
        ("cryptography", "open"),
    } <= cases
    assert ("reference", "ecdh") in cases
    assert all(r["bench"] == "hpke" and r["payload_bytes"] == 16 and r["ops_per_s"] > 0 for r in records)
