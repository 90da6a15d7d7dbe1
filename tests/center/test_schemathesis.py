"""Property-based API tests from the OpenAPI schema (schemathesis): no 5xx, answers match the schema.

Each documented operation gets a bounded number of generated requests (hypothesis), sent in process.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from center.api.access import POLICIES, Access
from center.api.app import create_app
from center.services.credits import CreditService, NewCredit
from center.settings import CenterSettings
from protocol.center_api import RedeemRequest
from tests.center.commerce import SoftDevice
from tests.center.conftest import _ENGINES, Media, add, catalog_for

pytestmark = pytest.mark.integration
OPERATIONS = sorted((method, path) for method, path in POLICIES if path != "/openapi.json")
TOKENS: dict[str, dict[str, str]] = {}
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory, media: Media) -> Any:
    center_settings = CenterSettings(data_dir=tmp_path_factory.mktemp("schemathesis") / "c")
    catalog = catalog_for(center_settings)
    for path in (media.image, media.text, media.audio):
        add(catalog, path, title=path.name)
    app = create_app(center_settings)
    device = SoftDevice()
    device.bind(app.state.center.commerce)
    credits = CreditService(app.state.center.commerce)
    code, _ = credits.issue(NewCredit(device.device_id, "prepaid", 10**9, "JPY"))
    credits.redeem(RedeemRequest(code=code, device_id=device.device_id), device.device_id)
    TOKENS["headers"] = device.headers
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    app.state.center.engine.dispose()
    while _ENGINES:
        _ENGINES.pop().dispose()


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_operation_conforms_to_the_schema(api_schema: Any, method: str, path: str) -> None:
    operation = api_schema[path][method]
    calls: list[int] = []

    @given(case=operation.as_strategy())
    @settings(
        max_examples=25,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def run(case: Any) -> None:
        case.call_and_validate(checks=CHECKS)
        if POLICIES[(method, path)] is Access.DEVICE_TOKEN:  # and once more as the enrolled, funded device
            case.call_and_validate(checks=CHECKS, headers=TOKENS["headers"])
        calls.append(1)

    run()
    assert calls
