"""The OpenAPI document: every operation lists its problem+json answers (RFC 9457, protocol.problems)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from protocol.problems import PROBLEM_CONTENT_TYPE, REGISTRY, ProblemDetails

_REF = {"$ref": "#/components/schemas/ProblemDetails"}


def problem_responses(*slugs: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for FastAPI routes: one per problem slug, body application/problem+json."""
    out: dict[int | str, dict[str, Any]] = {}
    for slug in slugs:
        t = REGISTRY[slug]
        out[t.status] = {
            "description": f"{t.title} (`{t.uri}`)",
            "content": {PROBLEM_CONTENT_TYPE: {"schema": _REF}},
        }
    return out


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["ProblemDetails"] = ProblemDetails.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        internal = problem_responses("internal-error", "method-not-allowed")
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                responses = operation.setdefault("responses", {})
                if "422" in responses:
                    responses["422"] = problem_responses("validation-error")[422]
                for status, body in internal.items():
                    responses.setdefault(str(status), body)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
