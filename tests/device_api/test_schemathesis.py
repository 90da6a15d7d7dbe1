"""Schemathesis against the device's published OpenAPI over real HTTP: no 5xx, and every answer conforms to
the schema (status, content type, body). Bounded: MAX_EXAMPLES per operation and mode, derandomized."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.device_api.live import PIN, LiveDevice, auth

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
