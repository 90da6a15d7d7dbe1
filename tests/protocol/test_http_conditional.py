"""If-None-Match (protocol/http/conditional.py) against RFC 9110 §13.1.2 and §8.8.3.2."""

from __future__ import annotations

import pytest

from protocol.http.conditional import none_match

ETAG = '"abc123"'


@pytest.mark.parametrize(
    "header",
    [
        '"abc123"',
        "*",
        'W/"abc123"',  # weak comparison: the weak form of the same tag matches
        '"other", "abc123"',
        ' "other" ,\t"abc123" ',
        '"other", *',
        ',,"abc123",',
    ],
)
def test_matches(header: str) -> None:
    assert none_match(header, ETAG) is True


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        '"other"',
        "abc123",  # not an entity-tag
        '"abc123',
        'W/"abc1234"',
        '"*"',  # a tag whose value is *, not the wildcard
        'w/"abc123"',  # W/ is case-sensitive (§8.8.3)
        '"abc"123"',
    ],
)
def test_does_not_match(header: str | None) -> None:
    assert none_match(header, ETAG) is False


def test_a_weak_current_tag_matches_its_strong_form() -> None:
    assert none_match('"v1"', 'W/"v1"') is True
