"""Bearer tokens in RAM (unit tier)."""

from __future__ import annotations

from device_os.api.tokens import TOKEN_RE, Tokens


def test_issue_and_check() -> None:
    tokens = Tokens()
    session = object()
    token = tokens.issue(session)
    assert TOKEN_RE.match(token)
    assert len(token) == 43  # 256 bits, base64url
    assert tokens.session_for(token) is session
    assert tokens.session_for(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert tokens.session_for("") is None
    assert tokens.session_for("not a token at all, far too long and with spaces") is None


def test_a_new_session_drops_old_tokens() -> None:
    tokens = Tokens()
    first, second = object(), object()
    a = tokens.issue(first)
    b = tokens.issue(first)
    assert tokens.session_for(a) is first
    assert tokens.session_for(b) is first
    c = tokens.issue(second)
    assert tokens.session_for(a) is None
    assert tokens.session_for(b) is None
    assert tokens.session_for(c) is second


def test_revoke_all_and_bound() -> None:
    tokens = Tokens(max_tokens=2)
    session = object()
    issued = [tokens.issue(session) for _ in range(3)]
    assert tokens.session_for(issued[0]) is None  # the oldest dropped
    assert len(tokens) == 2
    tokens.revoke_all()
    assert all(tokens.session_for(t) is None for t in issued)
    assert len(tokens) == 0


def test_only_digests_are_kept() -> None:
    tokens = Tokens()
    token = tokens.issue(object())
    assert token not in repr(vars(tokens))
