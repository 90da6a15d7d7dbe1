"""The problem-type registry (RFC 9457; DESIGN.md "Problems")."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from protocol import problems
from protocol.problems import (
    BY_URI,
    REGISTRY,
    TYPE_PREFIX,
    ProblemDetails,
    exit_code_for,
    problem,
    problem_body,
)


def test_slugs_and_uris_are_unique() -> None:
    slugs = [t.slug for t in problems._TYPES]
    assert len(slugs) == len(set(slugs)) == len(REGISTRY)
    uris = [t.uri for t in problems._TYPES]
    assert len(uris) == len(set(uris)) == len(BY_URI)


@pytest.mark.parametrize("slug", sorted(REGISTRY))
def test_each_type(slug: str) -> None:
    t = REGISTRY[slug]
    assert re.fullmatch(r"[a-z]+(-[a-z]+)*", t.slug)
    assert t.uri == TYPE_PREFIX + slug
    assert BY_URI[t.uri] is t
    assert 400 <= t.status <= 599
    assert 1 <= t.exit_code <= 13
    assert t.title
    assert not t.title.endswith(".")
    assert exit_code_for(t.uri) == t.exit_code
    assert problem(slug) is t


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "urn:coffer:problem:",
        "urn:coffer:problem:nope",
        "about:blank",
        "not-found",
        "URN:COFFER:PROBLEM:not-found",
    ],
)
def test_unknown_type_exits_1(uri: str) -> None:
    assert exit_code_for(uri) == 1


def test_server_errors_are_not_blamed_on_the_caller() -> None:
    for t in REGISTRY.values():
        if t.status >= 500:
            assert t.exit_code in (1, 13)
        if t.exit_code == 2:
            assert 400 <= t.status < 500


def test_problem_unknown_slug_is_a_programming_error() -> None:
    with pytest.raises(KeyError):
        problem("no-such-problem")


def test_problem_body() -> None:
    body = problem_body("wrong-pin", "2 tries left", tries_left=2)
    assert body == {
        "type": "urn:coffer:problem:wrong-pin",
        "title": "Wrong PIN",
        "status": 401,
        "detail": "2 tries left",
        "tries_left": 2,
    }
    parsed = ProblemDetails.model_validate(body)
    assert parsed.model_extra == {"tries_left": 2}
    assert problem_body("not-found") == {
        "type": TYPE_PREFIX + "not-found",
        "title": "Not found",
        "status": 404,
    }
    with pytest.raises(ValidationError):
        ProblemDetails.model_validate({"type": "x", "title": "y"})
    assert problems.PROBLEM_CONTENT_TYPE == "application/problem+json"
