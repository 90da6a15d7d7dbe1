"""Property-based API tests from the OpenAPI schema (schemathesis): no 5xx, answers match the schema.

Each documented operation gets a bounded number of generated requests (hypothesis), sent in process.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from center.api.access import POLICIES
from center.api.app import create_app
from center.settings import CenterSettings
from tests.center.conftest import _ENGINES, Media, add, catalog_for

pytestmark = pytest.mark.integration
OPERATIONS = sorted((method, path) for method, path in POLICIES if path != "/openapi.json")
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
        calls.append(1)

    run()
    assert calls
