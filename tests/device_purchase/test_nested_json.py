"""Deeply nested JSON (`[[[[...`) inside a JWS on every device route that takes one (issue 12, finding 2):
a 4xx problem, never a 500, and no state change (TPM counter, `state` bytes, content listing)."""

from __future__ import annotations

import json

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from protocol.b64 import b64url_encode
from protocol.keys import jwk_thumbprint
from tests.device_purchase.shop import Shop
from tests.protocol.test_jws import raw_sign

pytestmark = [pytest.mark.swtpm, pytest.mark.integration]
DEPTH = 2500  # far beyond the JSON decoder's recursion limit, within the routes' 12288-character JWS limit


def nested_jws(key: ec.EllipticCurvePrivateKey, typ: str, *, where: str = "payload") -> str:
    """A compact JWS signed by `key` whose header or payload holds `[[[[...]]]]`."""
    deep = b"[" * DEPTH + b"]" * DEPTH
    header = json.dumps({"alg": "ES256", "typ": typ, "kid": jwk_thumbprint(key.public_key())}).encode()
    payload = b'{"v":1,"order_id":"ord1","deep":' + deep + b"}"
    if where == "header":
        header, payload = b'{"alg":"ES256","deep":' + deep + b"}", b'{"v":1,"order_id":"ord1"}'
    signing_input = b64url_encode(header) + "." + b64url_encode(payload)
    return signing_input + "." + b64url_encode(raw_sign(signing_input.encode(), key))


def _post(shop: Shop, route: str, token: str) -> httpx.Response:
    client, headers = shop.live.client, shop.headers
    if route == "purchases":
        return shop.post(token, b"\x00" * 100)
    if route == "credits":
        return client.post("/v1/credits", json={"credit": token}, headers=headers)
    if route == "receipts":
        return client.post("/v1/receipts", json={"receipt": token}, headers=headers)
    body = {"enrollment": token, "root_jwk": shop.forger.root_jwk}
    return client.post("/v1/enrollment", json=body, headers=headers)


TYPES = {
    "purchases": "coffer-order",
    "credits": "coffer-credit",
    "receipts": "coffer-receipt",
    "enrollment": "coffer-enrollment",
}


@pytest.mark.parametrize("where", ["payload", "header"])
@pytest.mark.parametrize("signer", ["center", "stranger"])
@pytest.mark.parametrize("route", sorted(TYPES))
def test_nested_json_in_a_jws_is_a_4xx_problem(shop: Shop, route: str, signer: str, where: str) -> None:
    key = shop.forger.signing if signer == "center" else ec.generate_private_key(ec.SECP256R1())
    token = nested_jws(key, TYPES[route], where=where)
    assert len(token) <= 12288
    before = shop.snapshot()
    r = _post(shop, route, token)
    assert 400 <= r.status_code < 500, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "urn:coffer:problem:invalid-signature"
    assert shop.snapshot() == before
    assert shop.wallet()["counter"] == before.counter  # still serving


@pytest.mark.parametrize(
    "path", ["/v1/credits", "/v1/receipts", "/v1/enrollment", "/v1/activate", "/v1/pin", "/v1/unlock"]
)
def test_nested_json_request_body_is_a_4xx_problem(shop: Shop, path: str) -> None:
    """`[[[[...` as the JSON body itself (not inside a JWS): FastAPI's parser refuses it, a problem."""
    before = shop.snapshot()
    tries = shop.live.failed_tries()
    # ~6-7 KB: past the JSON decoder's recursion limit; routes whose body limit is smaller answer 413
    for body in (b"[" * 3000 + b"]" * 3000, b'{"a":' * 1200 + b"1" + b"}" * 1200):
        r = shop.live.client.post(
            path, content=body, headers={**shop.headers, "Content-Type": "application/json"}
        )
        assert 400 <= r.status_code < 500, r.text
        assert r.headers["content-type"] == "application/problem+json"
    assert shop.snapshot() == before
    assert shop.live.failed_tries() == tries
