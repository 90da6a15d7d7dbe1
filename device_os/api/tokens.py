"""Bearer tokens of the device API (DESIGN.md "Device API"): 256-bit random, in RAM only.

Only SHA-256 digests are kept, compared with `hmac.compare_digest`. Every token belongs to one unlock
session (the core's `Wallet` object of that unlock): a lock of any kind (explicit, idle, three wrong PINs)
ends the session, so its tokens die with it, and a restart forgets them all.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading

TOKEN_BYTES = 32
TOKEN_RE = re.compile(r"\A[A-Za-z0-9_-]{43}\Z")  # token_urlsafe(32): 43 base64url characters
MAX_TOKENS = 8  # per session; the oldest is dropped beyond that


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


class Tokens:
    """The live tokens of the current unlock session. Thread-safe."""

    def __init__(self, max_tokens: int = MAX_TOKENS) -> None:
        self._lock = threading.Lock()
        self._session: object | None = None
        self._digests: list[bytes] = []
        self._max = max_tokens

    def issue(self, session: object) -> str:
        """A fresh token for `session`; tokens of any other session are dropped."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        with self._lock:
            if session is not self._session:
                self._session = session
                self._digests = []
            self._digests.append(_digest(token))
            del self._digests[: -self._max]
        return token

    def session_for(self, token: str) -> object | None:
        """The session `token` belongs to, or None (unknown, malformed or revoked)."""
        if not TOKEN_RE.match(token):
            return None
        digest = _digest(token)
        with self._lock:
            found = False
            for candidate in self._digests:  # no early exit: the time does not depend on the position
                found |= hmac.compare_digest(candidate, digest)
            return self._session if found else None

    def revoke_all(self) -> None:
        with self._lock:
            self._session = None
            self._digests = []

    def __len__(self) -> int:
        with self._lock:
            return len(self._digests)
