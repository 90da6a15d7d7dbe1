"""Schemathesis against the device's published OpenAPI over real HTTP: no 5xx, and every answer conforms to
the schema (status, content type, body). Bounded: MAX_EXAMPLES per operation and mode, derandomized."""

from __future__ import annotations

import json

import httpx
import pytest
import schemathesis
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from protocol.b64 import b64url_encode
from protocol.keys import jwk_thumbprint
from tests.device_api.live import PIN, LiveDevice, auth
from tests.protocol.test_jws import raw_sign
from tests.support.forger import Forger

pytestmark = [pytest.mark.swtpm, pytest.mark.integration]
MAX_EXAMPLES = 25
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


class Session:
    """Keeps a live token: cases may lock the device (POST /v1/lock, three wrong PINs); unlocking again before
    the next case keeps every PIN guess a RAM check (the TPM's lockout is never reached)."""

    def __init__(self, live: LiveDevice, token: str) -> None:
        self.live = live
        self.token = token

    def headers(self) -> dict[str, str]:
        if self.live.client.get("/v1/wallet", headers=auth(self.token)).status_code != 200:
            self.token = self.live.unlock(PIN)
        return auth(self.token)


def test_openapi_fuzz_no_server_errors(enrolled: tuple[LiveDevice, str]) -> None:
    live, token = enrolled
    session = Session(live, token)
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 11
    seen: dict[str, set[int]] = {}
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: schemathesis.Case) -> None:
                response = case.call(base_url=live.url, headers=session.headers())
                seen.setdefault(case.operation.label, set()).add(response.status_code)
                case.validate_response(response, checks=CHECKS)

            try:
                run()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing to negate: no parameters, no body
    assert all(status < 500 for statuses in seen.values() for status in statuses), seen
    # the device is still healthy and usable afterwards
    assert httpx.get(f"{live.url}/v1/health").json()["tampered"] is False
    assert live.client.get("/v1/wallet", headers=session.headers()).status_code == 200


# -- hypothesis: JWS-carrying members and headers on every route (issue 12, finding 2) -------------------
JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
JSON = st.recursive(
    JSON_LEAVES,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
    max_leaves=40,
)
JWS_ROUTES = {
    "/v1/credits": "coffer-credit",
    "/v1/receipts": "coffer-receipt",
    "/v1/enrollment": "coffer-enrollment",
    "/v1/purchases": "coffer-order",
}


@st.composite
def json_segment(draw: st.DrawFn, typ: str, kid: str, header: bool) -> bytes:
    """A header or payload: well-formed, mutated, random JSON, `[[[[...` of any depth, or random bytes."""
    base: dict[str, object] = (
        {"alg": "ES256", "typ": typ, "kid": kid}
        if header
        else {"v": 1, "iss": "center", "iat": 1_800_000_000, "order_id": "ord1", "credit_id": "cr1"}
    )
    kind = draw(st.sampled_from(["base", "mutated", "json", "nested", "nested", "bytes"]))
    if kind == "base":
        return json.dumps(base).encode()
    if kind == "mutated":
        return json.dumps({**base, draw(st.sampled_from([*base, "x"])): draw(JSON)}).encode()
    if kind == "json":
        return json.dumps(draw(JSON)).encode()
    if kind == "nested":
        # up to ~8 KB, so that the token fits the routes' 12288-character limit and reaches the parser
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}"), ("[{}", ""), ("[", "")]))
        depth = draw(st.sampled_from([2, 32, 33, 1100, 1300]) | st.integers(0, 8000 // (2 * len(opener))))
        return b'{"v":1,"order_id":"o","x":' + (opener * depth + closer * depth).encode() + b"}"
    return draw(st.binary(max_size=64))


@st.composite
def tokens(draw: st.DrawFn, typ: str, signing: ec.EllipticCurvePrivateKey) -> str:
    key = draw(st.sampled_from([signing, STRANGER]))
    kid = jwk_thumbprint(key.public_key())
    header = draw(json_segment(typ, kid, header=True))
    payload = draw(json_segment(typ, kid, header=False))
    signing_input = b64url_encode(header) + "." + b64url_encode(payload)
    how = draw(st.sampled_from(["sign", "garbage", "cut"]))
    if how == "sign":
        signature = raw_sign(signing_input.encode(), key)
    else:
        signature = draw(st.binary(min_size=0 if how == "cut" else 64, max_size=64 if how == "cut" else 80))
    return signing_input + "." + b64url_encode(signature)


STRANGER = ec.generate_private_key(ec.SECP256R1())
HEADER_VALUES = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(str.strip)


def test_jws_members_and_headers_fuzz_no_server_errors(
    enrolled: tuple[LiveDevice, str], forger: Forger
) -> None:
    """Every route that carries a JWS (body member or `Coffer-Order`), with well-formed, mutated, random,
    deeply nested and badly signed tokens, and random extra headers on every route: never a 5xx, always
    problem+json on errors, and no TPM dictionary-attack try spent. Tokens are signed by the real center's key
    (via the forger: these are never messages it would sign) or a stranger's."""
    live, token = enrolled
    session = Session(live, token)
    tries = live.failed_tries()
    routes = [
        (m.upper(), p) for p, ops in live.client.get("/openapi.json").json()["paths"].items() for m in ops
    ]
    statuses: set[int] = set()

    @settings(
        max_examples=80,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        for path, typ in JWS_ROUTES.items():  # every route gets a token of its kind in every example
            jws_token = data.draw(tokens(typ, forger.signing))
            headers = session.headers()
            if path == "/v1/purchases":
                headers |= {"Coffer-Order": jws_token, "Content-Type": "application/octet-stream"}
                body = data.draw(st.binary(max_size=256))
                r = live.client.post(path, content=body, headers=headers, params={"mode": "deferred"})
            else:
                payload: dict[str, object] = {path.removeprefix("/v1/").removesuffix("s"): jws_token}
                if path == "/v1/enrollment":
                    payload["root_jwk"] = forger.root_jwk
                r = live.client.post(path, json=payload, headers=headers)
            _check(r)
            statuses.add(r.status_code)
        # and one route with random extra headers
        method, route = data.draw(st.sampled_from(routes))
        if route in ("/v1/setup", "/v1/unlock", "/v1/pin", "/v1/lock"):
            return  # PIN guesses and locking are the schemathesis test's business (RAM checks only)
        extra = data.draw(
            st.dictionaries(
                st.sampled_from(
                    ["Range", "Content-Type", "Coffer-Order", "Accept", "Content-Encoding", "X-A"]
                ),
                HEADER_VALUES,
                max_size=3,
            )
        )
        url = route.replace("{item}", data.draw(st.sampled_from(["item1", "x" * 70, "%2e%2e"])))
        r = live.client.request(method, url, headers=session.headers() | extra, content=b"{}")
        _check(r)

    run()
    assert statuses <= {200, 400, 401, 404, 409, 413, 415, 422}, statuses
    assert live.failed_tries() == tries
    assert httpx.get(f"{live.url}/v1/health").json()["tampered"] is False


def _check(r: httpx.Response) -> None:
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.headers["content-type"] == "application/problem+json", r.text
