"""Signed messages (RFC 7515 compact, ES256 raw R||S): interop with joserfc and jwcrypto both ways, and strict
rejection of every malformed, mis-signed, expired or misaddressed token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jws as joserfc_jws
from joserfc.jwk import ECKey
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jws as jwcrypto_jws

from protocol import jws
from protocol.b64 import b64url_decode, b64url_encode
from protocol.errors import EncodingError, JwsError, JwsExpired, JwsWrongAudience
from protocol.keys import device_id_for, jwk_thumbprint
from protocol.messages import (
    PAYLOAD_TYPES,
    Credit,
    Enrollment,
    Jwk,
    Keyset,
    Order,
    Payment,
    Receipt,
    SignedPayload,
    Statement,
    message_hash,
)
from protocol.money import Money
from protocol.pricing import Coupon, Debit, Purses, Ticket

N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
NOW = 1_700_000_000
KEY = ec.generate_private_key(ec.SECP256R1())
PUB = KEY.public_key()
KID = jwk_thumbprint(PUB)
OTHER = ec.generate_private_key(ec.SECP256R1())
SIGNER = jws.SoftwareSigner(KEY)
DEVICE = device_id_for(ec.generate_private_key(ec.SECP256R1()).public_key())
OTHER_DEVICE = device_id_for(OTHER.public_key())


def samples() -> list[SignedPayload]:
    """One valid payload of every kind (two credit shapes)."""
    jpy = Money(amount=500, currency="JPY")
    return [
        Keyset(
            iss="center",
            iat=NOW,
            version=3,
            signing_jwk=Jwk.from_public_key(PUB),
            payment_jwk=Jwk.from_public_key(OTHER.public_key()),
        ),
        Enrollment(
            iss="center", iat=NOW, device_id=DEVICE, keyset="a.b.c", device_token_hash=message_hash("a.b.c")
        ),
        Order(
            iss="center",
            iat=NOW,
            order_id="ord_1",
            item_id="item_1",
            device_id=DEVICE,
            price=jpy,
            content_sha256="ab" * 32,
            content_length=123_456,
            aead="chacha20-poly1305",
            segment_size=65536,
            wrapped_key=b64url_encode(b"\x04" + b"\x01" * 112),
            exp=NOW + 600,
        ),
        Credit(
            iss="center",
            iat=NOW,
            credit_id="cr_1",
            device_id=DEVICE,
            kind="coupon",
            amount=jpy,
            exp=NOW + 86400,
        ),
        Credit(
            iss="center",
            iat=NOW,
            credit_id="cr_2",
            device_id=DEVICE,
            kind="ticket",
            item_id="item_9",
            exp=NOW + 1,
        ),
        Payment(
            iss=DEVICE,
            iat=NOW,
            order_id="ord_1",
            order_hash=message_hash("x.y.z"),
            device_id=DEVICE,
            counter=7,
            debits=(Debit(purse="coupon", credit_id="cr_1", amount=100), Debit(purse="prepaid", amount=400)),
        ),
        Receipt(
            iss="center", iat=NOW, order_id="ord_1", device_id=DEVICE, payment_hash=message_hash("p.q.r")
        ),
        Statement(
            iss=DEVICE,
            iat=NOW,
            device_id=DEVICE,
            counter=9,
            purses=Purses(
                prepaid={"JPY": 1000, "USD": 5},
                coupons=(Coupon(credit_id="c", amount=jpy, exp=NOW + 5),),
                tickets=(Ticket(credit_id="t", item_id="i", exp=NOW + 5),),
            ),
            outbox=("ord_1", "ord_2"),
            nonce="n" * 16,
        ),
    ]


SAMPLES = samples()
IDS = [f"{p.TYP}-{i}" for i, p in enumerate(SAMPLES)]
RECEIPT = next(p for p in SAMPLES if isinstance(p, Receipt))
ORDER = next(p for p in SAMPLES if isinstance(p, Order))


def raw_sign(signing_input: bytes, key: ec.EllipticCurvePrivateKey = KEY) -> bytes:
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def forge(
    header: dict[str, Any] | bytes | None = None,
    payload: dict[str, Any] | bytes | None = None,
    *,
    key: ec.EllipticCurvePrivateKey = KEY,
    signature: bytes | None = None,
) -> str:
    """A compact JWS built by hand, validly ES256-signed over whatever header and payload bytes are given."""
    if header is None:
        header = {"alg": "ES256", "typ": Receipt.TYP, "kid": KID}
    if payload is None:
        payload = RECEIPT.model_dump(mode="json", exclude_none=True)
    hb = header if isinstance(header, bytes) else json.dumps(header).encode()
    pb = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signing_input = b64url_encode(hb) + "." + b64url_encode(pb)
    sig = raw_sign(signing_input.encode(), key) if signature is None else signature
    return signing_input + "." + b64url_encode(sig)


def receipt_payload(**changes: Any) -> dict[str, Any]:
    body = RECEIPT.model_dump(mode="json", exclude_none=True)
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


def verify_receipt(token: str, **kwargs: Any) -> Receipt:
    kwargs.setdefault("keys", PUB)
    kwargs.setdefault("now", NOW)
    return jws.verify(token, Receipt, **kwargs)


# --- round trip and interop -----------------------------------------------------------------------


@pytest.mark.parametrize("payload", SAMPLES, ids=IDS)
def test_round_trip(payload: SignedPayload) -> None:
    token = jws.sign(payload, SIGNER)
    assert jws.verify(token, type(payload), keys=[OTHER.public_key(), PUB], now=NOW) == payload
    header = jws.unverified_header(token)
    assert header == {"alg": "ES256", "typ": payload.TYP, "kid": KID}
    assert len(b64url_decode(token.split(".")[2])) == 64


def test_every_kind_is_registered_by_its_typ() -> None:
    assert set(PAYLOAD_TYPES) == {p.TYP for p in SAMPLES}
    assert all(typ == cls.TYP for typ, cls in PAYLOAD_TYPES.items())


@pytest.mark.parametrize("payload", SAMPLES, ids=IDS)
def test_our_tokens_verify_under_joserfc(payload: SignedPayload) -> None:
    token = jws.sign(payload, SIGNER)
    obj = joserfc_jws.deserialize_compact(token, ECKey.import_key(PUB), algorithms=["ES256"])
    assert obj.headers() == {"alg": "ES256", "typ": payload.TYP, "kid": ECKey.import_key(PUB).thumbprint()}
    assert json.loads(obj.payload) == payload.model_dump(mode="json", exclude_none=True)


@pytest.mark.parametrize("payload", SAMPLES, ids=IDS)
def test_our_tokens_verify_under_jwcrypto(payload: SignedPayload) -> None:
    token = jws.sign(payload, SIGNER)
    public = jwcrypto_jwk.JWK.from_pyca(PUB)
    obj = jwcrypto_jws.JWS()
    obj.deserialize(token)
    obj.verify(public, alg="ES256")
    assert json.loads(obj.payload) == payload.model_dump(mode="json", exclude_none=True)
    assert obj.jose_header == {"alg": "ES256", "typ": payload.TYP, "kid": public.thumbprint()}


@pytest.mark.parametrize("payload", SAMPLES, ids=IDS)
def test_joserfc_tokens_verify_under_ours(payload: SignedPayload) -> None:
    key = ECKey.import_key(KEY)
    header = {"alg": "ES256", "typ": payload.TYP, "kid": key.thumbprint()}
    body = json.dumps(payload.model_dump(mode="json", exclude_none=True)).encode()
    token = joserfc_jws.serialize_compact(header, body, key, algorithms=["ES256"])
    assert jws.verify(token, type(payload), keys=PUB, now=NOW) == payload


@pytest.mark.parametrize("payload", SAMPLES, ids=IDS)
def test_jwcrypto_tokens_verify_under_ours(payload: SignedPayload) -> None:
    key = jwcrypto_jwk.JWK.from_pyca(KEY)
    header = {"alg": "ES256", "typ": payload.TYP, "kid": key.thumbprint()}
    obj = jwcrypto_jws.JWS(json.dumps(payload.model_dump(mode="json", exclude_none=True)).encode())
    obj.add_signature(key, alg="ES256", protected=json.dumps(header))
    token = obj.serialize(compact=True)
    assert jws.verify(token, type(payload), keys=PUB, now=NOW) == payload


def test_signer_that_returns_der_is_refused() -> None:
    class DerSigner:
        def public_key(self) -> ec.EllipticCurvePublicKey:
            return PUB

        def sign(self, data: bytes) -> bytes:
            return KEY.sign(data, ec.ECDSA(hashes.SHA256()))

    with pytest.raises(ValueError, match="64 bytes"):
        jws.sign(RECEIPT, DerSigner())


def test_software_signer_refuses_other_curves() -> None:
    with pytest.raises(ValueError, match="P-256"):
        jws.SoftwareSigner(ec.generate_private_key(ec.SECP384R1()))


# --- header ---------------------------------------------------------------------------------------


def test_forge_helper_makes_acceptable_tokens() -> None:
    """Every rejection below changes one thing in a token that is otherwise accepted."""
    assert verify_receipt(forge()) == RECEIPT


@pytest.mark.parametrize(
    "alg", ["none", "None", "HS256", "ES384", "ES512", "RS256", "PS256", "EdDSA", "es256", ""]
)
def test_other_algorithms_are_refused(alg: str) -> None:
    with pytest.raises(JwsError):
        verify_receipt(forge({"alg": alg, "typ": Receipt.TYP, "kid": KID}))


def test_alg_none_with_empty_signature_is_refused() -> None:
    token = forge({"alg": "none", "typ": Receipt.TYP, "kid": KID}, signature=b"")
    assert token.endswith(".")
    with pytest.raises(JwsError):
        verify_receipt(token)


def test_hs256_keyed_with_the_public_key_is_refused() -> None:
    """The classic key-confusion attack: an HMAC keyed with public material the verifier holds."""
    header = {"alg": "HS256", "typ": Receipt.TYP, "kid": KID}
    signing_input = (
        b64url_encode(json.dumps(header).encode())
        + "."
        + b64url_encode(json.dumps(receipt_payload()).encode())
    )
    for secret in (json.dumps(Jwk.from_public_key(PUB).model_dump()).encode(), KID.encode()):
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        with pytest.raises(JwsError):
            verify_receipt(signing_input + "." + b64url_encode(mac))


def test_real_es384_token_is_refused() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    key = ECKey.import_key(p384)
    body = json.dumps(receipt_payload()).encode()
    token = joserfc_jws.serialize_compact(
        {"alg": "ES384", "typ": Receipt.TYP, "kid": KID}, body, key, algorithms=["ES384"]
    )
    with pytest.raises(JwsError):
        verify_receipt(token)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param({"typ": Receipt.TYP, "kid": KID}, id="no-alg"),
        pytest.param({"alg": "ES256", "kid": KID}, id="no-typ"),
        pytest.param({"alg": "ES256", "typ": Receipt.TYP}, id="no-kid"),
        pytest.param({"alg": "ES256", "typ": Receipt.TYP, "kid": KID, "crit": ["exp"]}, id="crit"),
        pytest.param(
            {
                "alg": "ES256",
                "typ": Receipt.TYP,
                "kid": KID,
                "jwk": Jwk.from_public_key(OTHER.public_key()).model_dump(),
            },
            id="jwk",
        ),
        pytest.param({"alg": "ES256", "typ": Receipt.TYP, "kid": KID, "x5u": "https://evil/"}, id="x5u"),
        pytest.param({"alg": "ES256", "typ": Receipt.TYP, "kid": KID, "jku": "https://evil/"}, id="jku"),
        pytest.param({"alg": "ES256", "typ": Receipt.TYP, "kid": KID, "b64": False}, id="b64"),
        pytest.param({"alg": "ES256", "typ": Receipt.TYP, "kid": KID, "cty": "json"}, id="cty"),
        pytest.param({}, id="empty"),
    ],
)
def test_header_must_hold_exactly_alg_typ_kid(header: dict[str, Any]) -> None:
    with pytest.raises(JwsError):
        verify_receipt(forge(header))


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(b'["ES256"]', id="array"),
        pytest.param(b'"ES256"', id="string"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b'{"alg":"ES256","alg":"ES256","typ":"coffer-receipt","kid":"%s"}', id="duplicate-alg"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
    ],
)
def test_header_must_be_one_json_object(header: bytes) -> None:
    if b"%s" in header:
        header = header.replace(b"%s", KID.encode())
    with pytest.raises(JwsError):
        verify_receipt(forge(header))


def test_duplicate_kid_in_header_is_refused_even_if_one_is_right() -> None:
    header = b'{"alg":"ES256","typ":"coffer-receipt","kid":"unknown","kid":"' + KID.encode() + b'"}'
    with pytest.raises(JwsError, match="duplicate"):
        verify_receipt(forge(header))


def test_wrong_typ_is_refused() -> None:
    token = jws.sign(RECEIPT, SIGNER)
    with pytest.raises(JwsError, match="typ"):
        jws.verify(token, Order, keys=PUB, now=NOW)
    # a header that claims the right typ over another kind's payload fails on the payload
    forged = forge({"alg": "ES256", "typ": Order.TYP, "kid": KID}, receipt_payload())
    with pytest.raises(JwsError):
        jws.verify(forged, Order, keys=PUB, now=NOW)


@pytest.mark.parametrize(
    "typ", [None, 1, ["coffer-receipt"], "COFFER-RECEIPT", "application/coffer-receipt+jwt"]
)
def test_typ_must_be_exactly_the_kind(typ: Any) -> None:
    with pytest.raises(JwsError):
        verify_receipt(forge({"alg": "ES256", "typ": typ, "kid": KID}))


def test_unknown_kid_is_refused() -> None:
    token = jws.sign(RECEIPT, SIGNER)
    with pytest.raises(JwsError, match="kid"):
        verify_receipt(token, keys=OTHER.public_key())
    with pytest.raises(JwsError, match="kid"):
        verify_receipt(token, keys=[])
    for kid in ("", KID[:-1], KID + "A", None, 0):
        with pytest.raises(JwsError):
            verify_receipt(forge({"alg": "ES256", "typ": Receipt.TYP, "kid": kid}))


def test_right_kid_but_signed_by_another_key_is_refused() -> None:
    with pytest.raises(JwsError, match="signature"):
        verify_receipt(forge(key=OTHER))


# --- signature ------------------------------------------------------------------------------------


def test_der_signature_is_refused() -> None:
    token = jws.sign(RECEIPT, SIGNER)
    signing_input = token.rsplit(".", 1)[0]
    der = KEY.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    assert len(der) != 64 or der[0] == 0x30
    with pytest.raises(JwsError):
        verify_receipt(signing_input + "." + b64url_encode(der))


@pytest.mark.parametrize(
    ("r", "s"),
    [
        pytest.param(0, None, id="r=0"),
        pytest.param(None, 0, id="s=0"),
        pytest.param(N, None, id="r=n"),
        pytest.param(None, N, id="s=n"),
        pytest.param(2**256 - 1, None, id="r=max"),
        pytest.param(None, 2**256 - 1, id="s=max"),
        pytest.param(0, 0, id="both-0"),
    ],
)
def test_signature_scalars_out_of_range(r: int | None, s: int | None) -> None:
    token = forge()
    signing_input, sig = token.rsplit(".", 1)
    raw = b64url_decode(sig)
    r_bytes = raw[:32] if r is None else r.to_bytes(32, "big")
    s_bytes = raw[32:] if s is None else s.to_bytes(32, "big")
    with pytest.raises(JwsError):
        verify_receipt(signing_input + "." + b64url_encode(r_bytes + s_bytes))


def test_high_s_verifies_but_hashes_like_the_original() -> None:
    """ES256 (RFC 7518 §3.4) does not require low s: (r, n - s) verifies too; a relay can re-encode a token.

    message_hash() canonicalizes to low s: order_hash / payment_hash name the message, not the relay's bytes.
    """
    token = forge()
    signing_input, sig = token.rsplit(".", 1)
    raw = b64url_decode(sig)
    s = int.from_bytes(raw[32:], "big")
    mauled = signing_input + "." + b64url_encode(raw[:32] + (N - s).to_bytes(32, "big"))
    assert mauled != token
    assert verify_receipt(mauled) == RECEIPT
    assert message_hash(mauled) == message_hash(token)


def test_sign_always_emits_low_s() -> None:
    """Over 64 signatures about half would be high-s by chance; sign() must canonicalize every one."""
    signer = jws.SoftwareSigner(KEY)
    for _ in range(64):
        raw = b64url_decode(jws.sign(RECEIPT, signer).rsplit(".", 1)[1])
        assert 0 < int.from_bytes(raw[32:], "big") <= N // 2


@pytest.mark.parametrize("length", [0, 32, 63, 65, 96, 128])
def test_signature_must_be_64_bytes(length: int) -> None:
    with pytest.raises(JwsError):
        verify_receipt(forge(signature=b"\x01" * length))


def test_modified_payload_is_refused() -> None:
    token = jws.sign(RECEIPT, SIGNER)
    h, _, s = token.split(".")
    other = b64url_encode(json.dumps(receipt_payload(order_id="ord_2")).encode())
    with pytest.raises(JwsError, match="signature"):
        verify_receipt(f"{h}.{other}.{s}")


def test_header_swapped_from_another_token_is_refused() -> None:
    token = jws.sign(RECEIPT, SIGNER)
    other = jws.sign(ORDER, SIGNER)
    with pytest.raises(JwsError):
        verify_receipt(other.split(".")[0] + "." + ".".join(token.split(".")[1:]))


# --- encoding -------------------------------------------------------------------------------------


def _noncanonical(segment: str) -> str:
    """Set an unused low bit of the last character (exists when len % 4 is 2 or 3)."""
    assert len(segment) % 4 in (2, 3)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return segment[:-1] + alphabet[alphabet.index(segment[-1]) | 1]


def _header_with_tail_bits() -> bytes:
    for pad in range(3):
        hb = json.dumps({"alg": "ES256", "typ": Receipt.TYP, "kid": KID}, indent=pad or None).encode()
        if len(hb) % 3:
            return hb
    raise AssertionError("unreachable")


@pytest.mark.parametrize("part", [0, 1, 2])
def test_noncanonical_base64url_is_refused(part: int) -> None:
    payload = json.dumps(receipt_payload()).encode()
    if len(payload) % 3 == 0:
        payload += b" "
    token = forge(_header_with_tail_bits(), payload)
    assert verify_receipt(token) == RECEIPT
    parts = token.split(".")
    parts[part] = _noncanonical(parts[part])
    assert base64.urlsafe_b64decode(parts[part] + "==") == base64.urlsafe_b64decode(
        token.split(".")[part] + "=="
    )
    with pytest.raises(JwsError):
        verify_receipt(".".join(parts))


@pytest.mark.parametrize("part", [0, 1, 2])
@pytest.mark.parametrize("change", ["pad", "std-alphabet", "space", "newline"])
def test_padding_and_foreign_characters_are_refused(part: int, change: str) -> None:
    token = forge()
    parts = token.split(".")
    seg = parts[part]
    if change == "pad":
        seg += "=" * (-len(seg) % 4 or 4)
    elif change == "std-alphabet":
        seg = seg[:-1] + "+"
    elif change == "space":
        seg = seg[:5] + " " + seg[5:]
    else:
        seg += "\n"
    parts[part] = seg
    with pytest.raises(JwsError):
        verify_receipt(".".join(parts))


@pytest.mark.parametrize(
    "token",
    [
        "",
        ".",
        "..",
        "a.b",
        "a.b.c.d",
        "a.b.c.d.e",
        forge() + ".",
        "." + forge(),
        "x" * (jws.MAX_TOKEN_LENGTH + 1),
    ],
)
def test_not_three_parts_or_too_long(token: str) -> None:
    with pytest.raises(JwsError):
        verify_receipt(token)


def test_non_string_token_is_refused() -> None:
    with pytest.raises(JwsError):
        verify_receipt(forge().encode())  # type: ignore[arg-type]


# --- payload --------------------------------------------------------------------------------------


def test_duplicate_payload_members_are_refused() -> None:
    body = json.dumps(receipt_payload())[:-1] + ', "order_id": "ord_evil"}'
    with pytest.raises(JwsError, match="duplicate"):
        verify_receipt(forge(payload=body.encode()))


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(receipt_payload(extra="x"), id="extra-member"),
        pytest.param(receipt_payload(v=...), id="no-v"),
        pytest.param(receipt_payload(v=2), id="v=2"),
        pytest.param(receipt_payload(v=0), id="v=0"),
        pytest.param(receipt_payload(v="1"), id="v-string"),
        pytest.param(receipt_payload(v=True), id="v-true"),
        pytest.param(receipt_payload(v=1.0), id="v-float"),
        pytest.param(receipt_payload(iss=...), id="no-iss"),
        pytest.param(receipt_payload(iat=...), id="no-iat"),
        pytest.param(receipt_payload(iat=float(NOW)), id="iat-float"),
        pytest.param(receipt_payload(iat=-1), id="iat-negative"),
        pytest.param(receipt_payload(iat=str(NOW)), id="iat-string"),
        pytest.param(receipt_payload(device_id="dev_short"), id="bad-device-id"),
        pytest.param(receipt_payload(payment_hash="A" * 44), id="bad-hash"),
    ],
)
def test_payload_must_match_the_model_exactly(payload: dict[str, Any]) -> None:
    with pytest.raises(JwsError, match="payload"):
        verify_receipt(forge(payload=payload))


@pytest.mark.parametrize("payload", [b"[]", b'"receipt"', b"null", b"{", b"\xff", b"", b"NaN"])
def test_payload_must_be_a_json_object(payload: bytes) -> None:
    with pytest.raises(JwsError):
        verify_receipt(forge(payload=payload))


def _order_payload(**changes: Any) -> dict[str, Any]:
    body = ORDER.model_dump(mode="json", exclude_none=True)
    body.update(changes)
    return body


def _verify_order(payload: dict[str, Any], now: int = NOW) -> Order:
    return jws.verify(
        forge({"alg": "ES256", "typ": Order.TYP, "kid": KID}, payload), Order, keys=PUB, now=now
    )


@pytest.mark.parametrize(
    "price",
    [
        {"amount": 500.0, "currency": "JPY"},
        {"amount": 5.5, "currency": "JPY"},
        {"amount": "500", "currency": "JPY"},
        {"amount": True, "currency": "JPY"},
        {"amount": -1, "currency": "JPY"},
        {"amount": 2**53, "currency": "JPY"},
        {"amount": 500, "currency": "jpy"},
        {"amount": 500},
        {"amount": 500, "currency": "JPY", "scale": 0},
        500,
    ],
)
def test_money_is_integer_minor_units(price: Any) -> None:
    assert _verify_order(_order_payload()) == ORDER
    with pytest.raises(JwsError):
        _verify_order(_order_payload(price=price))


def test_payment_debit_amount_must_be_an_integer() -> None:
    payment = next(p for p in SAMPLES if isinstance(p, Payment))
    body = payment.model_dump(mode="json", exclude_none=True)
    body["debits"][0]["amount"] = 100.0
    token = forge({"alg": "ES256", "typ": Payment.TYP, "kid": KID}, body)
    with pytest.raises(JwsError):
        jws.verify(token, Payment, keys=PUB, now=NOW)


# --- time and audience ----------------------------------------------------------------------------


def test_expiry_is_exp_le_now() -> None:
    exp = ORDER.exp
    assert _verify_order(_order_payload(), now=exp - 1) == ORDER
    for now in (exp, exp + 1, 2**40):
        with pytest.raises(JwsExpired):
            _verify_order(_order_payload(), now=now)


def test_messages_without_exp_never_expire() -> None:
    assert verify_receipt(forge(), now=2**40) == RECEIPT


def test_expired_and_badly_signed_is_not_reported_as_expired() -> None:
    """JwsExpired and JwsWrongAudience are only said about messages whose signature is good."""
    token = forge({"alg": "ES256", "typ": Order.TYP, "kid": KID}, _order_payload(), key=OTHER)
    with pytest.raises(JwsError) as caught:
        jws.verify(token, Order, keys=PUB, now=ORDER.exp + 1)
    assert type(caught.value) is JwsError
    with pytest.raises(JwsError) as caught:
        jws.verify(token, Order, keys=PUB, now=NOW, audience=OTHER_DEVICE)
    assert type(caught.value) is JwsError


def test_audience() -> None:
    token = jws.sign(ORDER, SIGNER)
    assert jws.verify(token, Order, keys=PUB, now=NOW, audience=DEVICE) == ORDER
    with pytest.raises(JwsWrongAudience):
        jws.verify(token, Order, keys=PUB, now=NOW, audience=OTHER_DEVICE)
    keyset = jws.sign(SAMPLES[0], SIGNER)
    with pytest.raises(JwsWrongAudience):  # a keyset is addressed to nobody
        jws.verify(keyset, Keyset, keys=PUB, now=NOW, audience=DEVICE)


# --- credit shape rules through the JWS layer -----------------------------------------------------


def _credit(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "v": 1,
        "iss": "center",
        "iat": NOW,
        "credit_id": "cr_1",
        "device_id": DEVICE,
        "kind": "prepaid",
        "amount": {"amount": 1000, "currency": "JPY"},
        "exp": NOW + 86400,
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


YEAR = 366 * 86400


@pytest.mark.parametrize(
    ("body", "ok"),
    [
        pytest.param(_credit(), True, id="prepaid"),
        pytest.param(_credit(kind="coupon"), True, id="coupon"),
        pytest.param(_credit(kind="ticket", amount=..., item_id="item_1"), True, id="ticket"),
        pytest.param(_credit(exp=NOW + YEAR), True, id="exp-one-year"),
        pytest.param(_credit(exp=NOW + 1), True, id="exp-iat-plus-1"),
        pytest.param(_credit(exp=NOW + YEAR + 1), False, id="exp-beyond-a-year"),
        pytest.param(_credit(exp=NOW), False, id="exp-equals-iat"),
        pytest.param(_credit(exp=NOW - 1), False, id="exp-before-iat"),
        pytest.param(_credit(kind="ticket"), False, id="ticket-with-amount"),
        pytest.param(_credit(kind="ticket", item_id="item_1"), False, id="ticket-with-both"),
        pytest.param(_credit(kind="ticket", amount=...), False, id="ticket-with-neither"),
        pytest.param(_credit(item_id="item_1"), False, id="prepaid-with-item"),
        pytest.param(_credit(kind="coupon", amount=..., item_id="item_1"), False, id="coupon-with-item-only"),
        pytest.param(_credit(amount=...), False, id="prepaid-without-amount"),
        pytest.param(_credit(amount=None), False, id="amount-null"),
        pytest.param(_credit(kind="voucher"), False, id="unknown-kind"),
        pytest.param(_credit(amount={"amount": 10.0, "currency": "JPY"}), False, id="float-amount"),
    ],
)
def test_credit_shape(body: dict[str, Any], ok: bool) -> None:
    token = forge({"alg": "ES256", "typ": Credit.TYP, "kid": KID}, body)
    if ok:
        credit = jws.verify(token, Credit, keys=PUB, now=NOW, audience=DEVICE)
        assert credit.model_dump(mode="json", exclude_none=True) == body
    else:
        with pytest.raises(JwsError, match="payload"):
            jws.verify(token, Credit, keys=PUB, now=NOW)


# --- base64url (RFC 7515 §2) ----------------------------------------------------------------------


@given(st.binary(max_size=300))
@settings(max_examples=200)
def test_b64url_round_trip(data: bytes) -> None:
    text = b64url_encode(data)
    assert not set(text) & set("=+/")
    assert b64url_decode(text) == data
    assert b64url_decode(text.encode()) == data
    assert text == base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.mark.parametrize(
    "text",
    ["A", "AAAAA", "AA==", "AA=", "AB", "AAB", "ab+/", "a b", "a\n", "Zm9v\n", "é", b"\xff", "Zg==", "Zh"],
)
def test_b64url_decode_rejects(text: str | bytes) -> None:
    with pytest.raises(EncodingError):
        b64url_decode(text)


def test_b64url_decode_accepts_empty_and_canonical() -> None:
    assert b64url_decode("") == b""
    assert b64url_decode("Zg") == b"f"
    assert b64url_decode("-_8") == b"\xfb\xff"


# --- nesting (issue 12, finding 2) ------------------------------------------------------------------


def _nested(depth: int, open_: str = "[", close: str = "]") -> bytes:
    return (open_ * depth + close * depth).encode()


@pytest.mark.parametrize("depth", [jws.MAX_JSON_DEPTH + 1, 5000, 40000])
@pytest.mark.parametrize("where", ["header", "payload"])
def test_deeply_nested_json_is_one_opaque_error(depth: int, where: str) -> None:
    """`[[[[...` deeper than the bound: JwsError (never RecursionError), whether signed or not, in the header
    or the payload, and also for the unverified readers used for routing."""
    member = b'{"a":' + _nested(depth) + b"}"
    token = forge(payload=member) if where == "payload" else forge(header=member)
    with pytest.raises(JwsError):
        verify_receipt(token)
    with pytest.raises(JwsError):
        jws.unverified_header(token) if where == "header" else jws.unverified_member(token, "order_id")


@pytest.mark.parametrize("shape", ["array", "object", "mixed"])
def test_nesting_bound_counts_containers_not_brackets_in_strings(shape: str) -> None:
    deep = jws.MAX_JSON_DEPTH - 1  # the payload object itself is one level
    inner = {"array": _nested(deep), "object": b'{"x":' * deep + b"1" + b"}" * deep}.get(
        shape, b'[{"x":' * (deep // 2) + b"1" + b"}]" * (deep // 2)
    )
    body = json.dumps(receipt_payload())[:-1].encode() + b', "deep": ' + inner + b"}"
    with pytest.raises(JwsError, match="payload is malformed"):  # parsed, then refused by the model
        verify_receipt(forge(payload=body))
    brackets = json.dumps(receipt_payload(order_id="[" * 5000 + "{" * 5000)).encode()
    with pytest.raises(JwsError, match="payload is malformed"):  # brackets inside a string are text
        verify_receipt(forge(payload=brackets))


def test_unverified_member() -> None:
    token = forge()
    assert jws.unverified_member(token, "order_id") == RECEIPT.order_id
    for bad in ("a.b", "not base64.x.y", forge(payload=b"[]"), forge(payload=b"{")):
        with pytest.raises(JwsError):
            jws.unverified_member(bad, "order_id")
    with pytest.raises(JwsError):
        jws.unverified_member(forge(payload={"order_id": 5}), "order_id")
    with pytest.raises(JwsError):
        jws.unverified_member(forge(payload={"v": 1}), "order_id")


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=4),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
        max_leaves=60,
    )
)
def test_any_json_payload_ends_in_jws_error_or_a_payload(value: Any) -> None:
    for payload in (json.dumps(value).encode(), json.dumps({"v": 1, "x": value}).encode()):
        with pytest.raises(JwsError):
            verify_receipt(forge(payload=payload))


# --- the kid cache --------------------------------------------------------------------------------


def test_remembered_kids_are_per_key_object_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """`jws._kid` remembers a thumbprint per key object: it names only that key (another key object, even
    one checked just before, gets its own), and a full cache starts over instead of growing."""
    token = jws.sign(RECEIPT, SIGNER)
    other = OTHER.public_key()
    for _ in range(3):  # remembered after the first round: the answers do not change
        assert verify_receipt(token, keys=PUB) == RECEIPT
        assert verify_receipt(token, keys=KEY.public_key()) == RECEIPT  # a new object of the same key
        with pytest.raises(JwsError, match="kid"):
            verify_receipt(token, keys=other)
        with pytest.raises(JwsError, match="kid"):
            verify_receipt(jws.sign(RECEIPT, jws.SoftwareSigner(OTHER)), keys=PUB)
    assert jws._kid(PUB) == KID
    assert jws._kid(other) == jwk_thumbprint(other)
    monkeypatch.setattr(jws, "KID_CACHE", 2)
    monkeypatch.setattr(jws, "_kids", {})
    keys = [ec.generate_private_key(ec.SECP256R1()).public_key() for _ in range(5)]
    for key in keys:
        assert jws._kid(key) == jwk_thumbprint(key)
        assert len(jws._kids) <= 2
    assert [jws._kid(key) for key in keys] == [jwk_thumbprint(key) for key in keys]


def test_software_signer_keeps_one_public_key_object() -> None:
    assert SIGNER.public_key() is SIGNER.public_key()
    assert jwk_thumbprint(SIGNER.public_key()) == KID
