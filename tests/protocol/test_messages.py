"""Typed payloads of the signed messages (DESIGN.md "Signed messages"), checked as models, without the JWS."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from protocol.messages import (
    MAX_CREDIT_LIFETIME,
    PAYLOAD_TYPES,
    Credit,
    Jwk,
    Keyset,
    Order,
    SignedPayload,
    Statement,
    message_hash,
)
from tests.protocol.test_jws import DEVICE, IDS, NOW, ORDER, SAMPLES


def dump(payload: SignedPayload) -> dict[str, Any]:
    return payload.model_dump(mode="json", exclude_none=True)


@pytest.mark.parametrize("payload", SAMPLES, ids=IDS)
def test_json_round_trip(payload: SignedPayload) -> None:
    assert type(payload).model_validate_json(json.dumps(dump(payload))) == payload
    assert dump(payload)["v"] == 1


@pytest.mark.parametrize("payload", SAMPLES, ids=IDS)
def test_unknown_members_are_refused(payload: SignedPayload) -> None:
    with pytest.raises(ValidationError, match="extra"):
        type(payload).model_validate({**dump(payload), "surprise": 1})


@pytest.mark.parametrize("payload", SAMPLES, ids=IDS)
@pytest.mark.parametrize("v", [2, 0, True, 1.0, "1", None])
def test_v_is_the_integer_1(payload: SignedPayload, v: Any) -> None:
    body = {**dump(payload), "v": v}
    with pytest.raises(ValidationError):
        type(payload).model_validate(body)
    with pytest.raises(ValidationError):
        type(payload).model_validate_json(json.dumps(body))


@pytest.mark.parametrize("payload", SAMPLES, ids=IDS)
def test_payloads_are_frozen(payload: SignedPayload) -> None:
    with pytest.raises(ValidationError):
        payload.iat = 0  # type: ignore[misc]


def test_every_typ_is_distinct_and_prefixed() -> None:
    assert len(PAYLOAD_TYPES) == 7
    assert all(typ.startswith("coffer-") for typ in PAYLOAD_TYPES)
    assert not SignedPayload.TYP


def test_audience_and_expiry() -> None:
    by_type = {type(p): p for p in SAMPLES}
    assert by_type[Keyset].audience() is None
    assert by_type[Keyset].expiry() is None
    assert ORDER.audience() == DEVICE
    assert ORDER.expiry() == ORDER.exp
    assert by_type[Statement].expiry() is None


def test_message_hash_is_base64url_sha256_of_the_token() -> None:
    token = "eyJhIjoxfQ.eyJiIjoyfQ.c2ln"
    digest = hashlib.sha256(token.encode("ascii")).digest()
    assert message_hash(token) == base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert len(message_hash(token)) == 43


def test_jwk_model_round_trip() -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    jwk = Jwk.from_public_key(key)
    assert jwk.public_key().public_numbers() == key.public_numbers()
    with pytest.raises(ValidationError):
        Jwk.model_validate({**jwk.model_dump(), "d": "AAAA"})
    with pytest.raises(ValidationError):
        Jwk.model_validate({**jwk.model_dump(), "crv": "P-384"})


def _order(**changes: Any) -> dict[str, Any]:
    return {**dump(ORDER), **changes}


@pytest.mark.parametrize(
    ("changes", "ok"),
    [
        ({"segment_size": 1024}, True),
        ({"segment_size": 16 * 1024 * 1024}, True),
        ({"segment_size": 1023}, False),
        ({"segment_size": 16 * 1024 * 1024 + 1}, False),
        ({"aead": "aes-256-gcm"}, True),
        ({"aead": "aes-128-gcm"}, False),
        ({"content_sha256": "AB" * 32}, False),
        ({"content_sha256": "ab" * 31}, False),
        ({"content_length": -1}, False),
        ({"content_length": 0}, True),
        ({"device_id": "dev_" + "a" * 32}, True),
        ({"device_id": "dev_" + "0" * 32}, False),
        ({"order_id": "ord/1"}, False),
        ({"order_id": ""}, False),
        ({"order_id": "o" * 65}, False),
        ({"wrapped_key": "not base64!"}, False),
        ({"exp": 2**40 + 1}, False),
    ],
)
def test_order_fields(changes: dict[str, Any], ok: bool) -> None:
    if ok:
        assert Order.model_validate_json(json.dumps(_order(**changes)))
    else:
        with pytest.raises(ValidationError):
            Order.model_validate_json(json.dumps(_order(**changes)))


def _credit(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "iss": "center",
        "iat": NOW,
        "credit_id": "cr",
        "device_id": DEVICE,
        "kind": "coupon",
        "amount": {"amount": 100, "currency": "JPY"},
        "exp": NOW + 10,
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


def test_credit_lifetime_bound_is_366_days() -> None:
    assert MAX_CREDIT_LIFETIME == 366 * 86400
    Credit.model_validate(_credit(exp=NOW + MAX_CREDIT_LIFETIME))
    with pytest.raises(ValidationError, match="one year"):
        Credit.model_validate(_credit(exp=NOW + MAX_CREDIT_LIFETIME + 1))
    with pytest.raises(ValidationError, match="one year"):
        Credit.model_validate(_credit(exp=NOW))


def test_credit_kinds() -> None:
    assert Credit.model_validate(_credit(kind="prepaid")).amount is not None
    ticket = Credit.model_validate(_credit(kind="ticket", amount=..., item_id="item"))
    assert ticket.item_id == "item"
    assert "amount" not in ticket.model_dump(exclude_none=True)
    with pytest.raises(ValidationError, match="ticket"):
        Credit.model_validate(_credit(kind="ticket", item_id="item"))
    with pytest.raises(ValidationError, match="amount and no item_id"):
        Credit.model_validate(_credit(item_id="item"))
    with pytest.raises(ValidationError, match="amount and no item_id"):
        Credit.model_validate(_credit(amount=...))


@pytest.mark.parametrize("nonce", ["n" * 15, "n" * 129, "n" * 15 + "!", ""])
def test_statement_nonce(nonce: str) -> None:
    statement = next(p for p in SAMPLES if isinstance(p, Statement))
    with pytest.raises(ValidationError):
        Statement.model_validate({**dump(statement), "nonce": nonce})
