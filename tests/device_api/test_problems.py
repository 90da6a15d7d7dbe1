"""The one exception handler (unit tier, ASGI transport): each error family maps to its registry slug; the
unexpected ends in a bare 500 with neither traceback nor message in the body or the log."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from starlette.requests import Request

from device_os.api.app import create_app
from device_os.api.problems import handle
from device_os.api.settings import ServiceSettings
from device_os.core.device import Device
from device_os.errors import Conflict, NotProvisioned, NotSetUp, PinLockout, Unavailable, WrongPin
from device_os.tpm import Lockout, TpmError, TpmNotProvisioned, TpmUnavailable, TpmWrongPin
from protocol.errors import AttestationError, EncodingError, JwsError
from protocol.problems import REGISTRY

SECRET = "s3cr3t-in-a-message"


def _request() -> Request:
    return Request({"type": "http", "method": "GET", "path": "/v1/x", "headers": [], "query_string": b""})


def _map(exc: Exception) -> tuple[int, dict[str, Any], dict[str, str]]:
    response = asyncio.run(handle(_request(), exc))
    return response.status_code, json.loads(bytes(response.body)), dict(response.headers)


@pytest.mark.parametrize(
    ("exc", "slug"),
    [
        (NotSetUp("x"), "not-set-up"),
        (Conflict("x"), "conflict"),
        (WrongPin(4), "wrong-pin"),
        (TpmError("x", rc=0x101), "internal-error"),
        (JwsError("x"), "invalid-signature"),
        (AttestationError("x"), "attestation-failed"),
        (EncodingError("x"), "bad-request"),
        (RuntimeError(SECRET), "internal-error"),
    ],
)
def test_mapping(exc: Exception, slug: str) -> None:
    status, body, headers = _map(exc)
    assert body["type"] == f"urn:coffer:problem:{slug}"
    assert status == REGISTRY[slug].status == body["status"]
    assert headers["content-type"] == "application/problem+json"
    assert SECRET not in str(body)


@pytest.mark.parametrize(
    ("core", "tpm"),
    [
        (NotProvisioned("the device is not provisioned"), TpmNotProvisioned("no EK at 0x81010001")),
        (WrongPin(4), TpmWrongPin(4)),
    ],
)
def test_one_condition_one_answer_whichever_layer_raises_it(core: Exception, tpm: Exception) -> None:
    """The core's error and the adapter's for the same condition give the same problem (before, a
    `NotProvisioned` from the TPM adapter answered 500 and the core's 503)."""
    core_status, core_body, core_headers = _map(core)
    tpm_status, tpm_body, tpm_headers = _map(tpm)
    assert (tpm_status, tpm_body["type"]) == (core_status, core_body["type"])
    assert tpm_headers.get("retry-after") == core_headers.get("retry-after")


def test_retry_after_headers() -> None:
    status, body, headers = _map(PinLockout(600))
    assert (status, headers["retry-after"], body["retry_after"]) == (423, "600", 600)
    status, body, headers = _map(Lockout(300))
    assert (status, headers["retry-after"]) == (423, "300")
    for exc in (TpmUnavailable("gone"), Unavailable("half-way")):
        status, body, headers = _map(exc)
        assert status == 503
        assert int(headers["retry-after"]) > 0
    status, body, _ = _map(WrongPin(None))
    assert "tries_left" not in body


class _Broken:
    """A device whose status() fails in an unforeseen way."""

    def status(self) -> Any:
        raise RuntimeError(SECRET)


def test_unexpected_error_through_the_app(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = ServiceSettings(data_dir=tmp_path, tcti="swtpm:port=1", listen="127.0.0.1:8470")
    app = create_app(settings, cast(Device, _Broken()))

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8470") as client:
            return await client.get("/v1/health")

    with caplog.at_level(logging.DEBUG):
        r = asyncio.run(call())
    assert r.status_code == 500
    assert r.json()["type"] == "urn:coffer:problem:internal-error"
    assert SECRET not in r.text
    assert "Traceback" not in r.text
    assert SECRET not in caplog.text
    assert "RuntimeError" in caplog.text
