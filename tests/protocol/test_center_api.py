"""The center's commerce API models: they accept what the device and the center produce, refuse the rest."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from protocol.center_api import OrderRequest, PaymentRequest, RedeemRequest
from protocol.problems import REGISTRY


def test_models_forbid_unknown_members_and_bound_strings() -> None:
    device_id = "dev_" + "a" * 32
    assert OrderRequest(item_id="itm_x", device_id=device_id).device_id == device_id
    with pytest.raises(ValidationError):
        OrderRequest.model_validate({"item_id": "itm_x", "device_id": device_id, "extra": 1})
    with pytest.raises(ValidationError):
        RedeemRequest(code="short", device_id=device_id)
    with pytest.raises(ValidationError):
        PaymentRequest(payment="not base64url!")


def test_commerce_problem_types_are_registered() -> None:
    for slug, status in (
        ("insufficient-funds", 402),
        ("device-revoked", 403),
        ("device-suspect", 403),
        ("binding-conflict", 409),
        ("idempotency-mismatch", 422),
        ("unpaid-limit", 403),
    ):
        assert REGISTRY[slug].status == status


def test_a_device_identity_may_carry_members_the_center_does_not_judge() -> None:
    from protocol.center_api import DeviceIdentity

    evidence = {"attest": "AA", "signature": "AA", "certified_public": "AA", "ak_public": "AA"}
    jwk = {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}
    identity = {
        "device_id": "dev_" + "a" * 32,
        "software_version": "1",
        "aead": "aes-256-gcm",
        "ek_certificate": "PEM",
        "ek_public": "AA",
        "attestation_key": "PEM",
        "attestation_key_public": "AA",
        "kem_key": "PEM",
        "payment_key": "PEM",
        "kem_jwk": jwk,
        "payment_jwk": jwk,
        "certify_nonce": "AA",
        "certify": {"kem": evidence, "payment": evidence},
    }
    parsed = DeviceIdentity.model_validate(
        {**identity, "root_pinning": "pinned", "pinned_root_fingerprint": None}
    )
    assert parsed.model_dump(mode="json") == identity
    with pytest.raises(ValidationError):
        DeviceIdentity.model_validate({**identity, "certify": {"kem": evidence}})
