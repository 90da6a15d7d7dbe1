"""HTTP-level rules of the device API over real HTTP: Host check (DNS rebinding), no CORS, body limits
enforced while reading, problem+json for every error, no secrets in bodies or logs."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

from device_os.api.access import POLICIES
from tests.device_api.live import PIN, LiveDevice, auth

pytestmark = [pytest.mark.swtpm, pytest.mark.integration]


def _slug(r: httpx.Response) -> str:
    assert r.headers["content-type"] == "application/problem+json", r.text
    slug: str = r.json()["type"].removeprefix("urn:coffer:problem:")
    return slug


def test_foreign_host_is_misdirected(unlocked: tuple[LiveDevice, str]) -> None:
    live, token = unlocked
    host, port = live.settings.address()
    for bad in (
        "evil.example",
        f"evil.example:{port}",
        f"localhost:{port}",
        f"{host}:{port + 1}",
        "",
        "127.0.0.2",
    ):
        r = live.client.get("/v1/health", headers={"Host": bad})
        assert r.status_code == 421, (bad, r.text)
        assert _slug(r) == "misdirected-request"
        r = live.client.post("/v1/unlock", json={"pin": PIN}, headers={"Host": bad})
        assert r.status_code == 421
        r = live.client.get("/v1/wallet", headers={"Host": bad, **auth(token)})
        assert r.status_code == 421
    for good in (host, f"{host}:{port}"):
        assert live.client.get("/v1/health", headers={"Host": good}).status_code == 200


def test_no_cors_headers_ever(unlocked: tuple[LiveDevice, str]) -> None:
    live, token = unlocked
    origin = {"Origin": "http://evil.example"}
    preflight = live.client.options(
        "/v1/unlock",
        headers={
            **origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    responses = [
        preflight,
        live.client.get("/v1/health", headers=origin),
        live.client.get("/v1/wallet", headers={**origin, **auth(token)}),
        live.client.post("/v1/unlock", json={"pin": "000000"}, headers=origin),
    ]
    assert preflight.status_code == 405
    for r in responses:
        assert not [h for h in r.headers if h.lower().startswith("access-control-")], r.headers
        assert r.headers["cache-control"] == "no-store"


def test_body_limits_declared_and_streamed(unlocked: tuple[LiveDevice, str]) -> None:
    live, token = unlocked
    limit = POLICIES[("POST", "/v1/credits")].max_body
    before = live.snapshot()
    big = b'{"credit": "' + b"a" * (limit + 10) + b'"}'
    r = live.client.post(
        "/v1/credits", content=big, headers={"Content-Type": "application/json", **auth(token)}
    )
    assert r.status_code == 413
    assert _slug(r) == "payload-too-large"

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit must hold while reading
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    r = live.client.post(
        "/v1/credits", content=chunked(), headers={"Content-Type": "application/json", **auth(token)}
    )
    assert r.status_code == 413
    assert _slug(r) == "payload-too-large"
    assert "content-length" not in r.request.headers

    unlock_limit = POLICIES[("POST", "/v1/unlock")].max_body
    r = live.client.post(
        "/v1/unlock", content=b" " * (unlock_limit + 1), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 413
    r = live.client.request("GET", "/v1/health", content=b"x" * 10)  # GET routes take no body at all
    assert r.status_code == 413
    assert live.snapshot() == before
    assert live.client.get("/v1/wallet", headers=auth(token)).status_code == 200


def test_every_error_is_problem_json(unlocked: tuple[LiveDevice, str]) -> None:
    live, token = unlocked
    json_type = {"Content-Type": "application/json"}
    cases = [
        (live.client.get("/v1/nothing-here"), 404, "not-found"),
        (live.client.delete("/v1/health"), 405, "method-not-allowed"),
        (live.client.post("/v1/unlock", content=b"{not json", headers=json_type), 422, "validation-error"),
        (live.client.post("/v1/unlock", json={"pin": PIN, "extra": 1}), 422, "validation-error"),
        (live.client.post("/v1/unlock", json={"pin": 123456}), 422, "validation-error"),
        (live.client.post("/v1/unlock", content=PIN.encode(), headers={"Content-Type": "text/plain"}), 415,
         "unsupported-media-type"),  # issue 12 #8: was 422; a JSON-only route refuses other types first
        (live.client.get("/v1/statement", params={"nonce": "short"}, headers=auth(token)), 422,
         "validation-error"),
        (live.client.post("/v1/credits", json={"credit": "a.b.c"}, headers=auth(token)), 409, "not-enrolled"),
    ]  # fmt: skip
    for r, status, slug in cases:
        assert r.status_code == status, (slug, r.text)
        assert _slug(r) == slug
        assert "Traceback" not in r.text
    r = live.client.delete("/v1/health")
    assert "GET" in r.headers["allow"]


def test_validation_errors_do_not_echo_input(live: LiveDevice) -> None:
    secret = "918273645"
    r = live.client.post("/v1/setup", json={"pin": secret, "unexpected": secret})
    assert r.status_code == 422
    assert secret not in r.text
    r = live.client.post("/v1/setup", json={"pin": secret * 10})
    assert r.status_code == 422
    assert secret not in r.text
    assert r.json()["errors"][0]["loc"] == ["body", "pin"]


def test_logs_never_contain_pins_or_tokens(live: LiveDevice, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    pin, new_pin = "564738", "91827364"
    live.setup(pin)
    live.client.post("/v1/unlock", json={"pin": "000000"})
    token = live.unlock(pin)
    live.client.post("/v1/unlock", json={"pin": "111111"})
    live.client.post("/v1/pin", json={"old_pin": pin, "new_pin": new_pin}, headers=auth(token))
    live.client.post("/v1/setup", json={"pin": pin, "x": 1})
    live.client.post("/v1/lock", headers=auth(token))
    text = caplog.text
    assert "unlocked" in text  # the core does log
    for secret in (pin, new_pin, token, "000000", "111111"):
        assert secret not in text
