"""The one registry of problem types (RFC 9457) used by the center and the device.

Every HTTP error is `application/problem+json` whose `type` is `urn:coffer:problem:<slug>` from this table;
`terminal_cli` ends with the exit code listed here for a type it has no named failure for (its named failures,
20-32, override these: terminal_cli/errors.py, docs/terminal.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:coffer:problem:"


@dataclass(frozen=True)
class ProblemType:
    slug: str
    status: int
    title: str
    exit_code: int

    @property
    def uri(self) -> str:
        return TYPE_PREFIX + self.slug


# Exit codes (terminal_cli): 1 internal/unexpected, 2 bad input, 3 not implemented, 4 not found,
# 5 authentication, 6 locked out, 7 wrong device state, 8 refused for safety (tamper, revoked),
# 9 money, 10 conflict, 11 untrusted message, 12 corrupt content, 13 unavailable.
_TYPES = [
    ProblemType("bad-request", 400, "The request is malformed", 2),
    ProblemType("validation-error", 422, "The request failed validation", 2),
    ProblemType("payload-too-large", 413, "The request body is too large", 2),
    ProblemType("unsupported-media-type", 415, "The request body has the wrong media type", 2),
    ProblemType("method-not-allowed", 405, "Method not allowed", 2),
    ProblemType("misdirected-request", 421, "The Host header names another address", 2),
    ProblemType("range-not-satisfiable", 416, "The requested range is not satisfiable", 2),
    ProblemType("not-found", 404, "Not found", 4),
    ProblemType("unauthorized", 401, "Authentication required", 5),
    ProblemType("wrong-pin", 401, "Wrong PIN", 5),
    ProblemType("pin-lockout", 423, "The TPM is in dictionary-attack lockout", 6),
    ProblemType("device-locked", 403, "The device is locked", 5),
    ProblemType("not-set-up", 409, "The device is not set up", 7),
    ProblemType("already-set-up", 409, "The device is already set up", 7),
    ProblemType("not-enrolled", 409, "The device is not enrolled with a center", 7),
    ProblemType("already-enrolled", 409, "The device is already enrolled", 7),
    ProblemType("weak-pin", 422, "The PIN must be at least 6 digits", 2),
    ProblemType("device-tampered", 409, "Device state failed its integrity check; spending is refused", 8),
    ProblemType("device-revoked", 403, "The device is revoked", 8),
    ProblemType("insufficient-funds", 402, "Insufficient funds", 9),
    ProblemType("unpaid-limit", 403, "Too many unpaid deliveries", 9),
    ProblemType("already-owned", 409, "The item is already in the library", 10),
    ProblemType("order-settled", 409, "The order is already settled", 10),
    ProblemType("credit-already-applied", 409, "The credit was already applied", 10),
    ProblemType("idempotency-conflict", 409, "The idempotency key was used for another request", 10),
    ProblemType("conflict", 409, "The request conflicts with the current state", 10),
    ProblemType("invalid-signature", 422, "A signed message is malformed or not signed by a trusted key", 11),
    ProblemType("message-expired", 422, "A signed message has expired", 11),
    ProblemType("wrong-device", 422, "A signed message is addressed to another device", 11),
    ProblemType("untrusted-keyset", 422, "The center key set is not signed by the pinned root", 11),
    ProblemType("attestation-failed", 422, "The TPM attestation evidence was rejected", 11),
    ProblemType("invalid-payment", 422, "The payment is not valid for this order", 11),
    ProblemType("corrupt-content", 422, "The content stream is corrupt or truncated", 12),
    ProblemType("content-mismatch", 422, "The content does not match the order's hash or length", 12),
    ProblemType("segment-too-large", 422, "The content stream's segment size is too large", 12),
    ProblemType("unsupported-media", 422, "The file cannot be previewed and no trial file was given", 2),
    ProblemType("rate-limited", 429, "Too many requests", 13),
    ProblemType("service-unavailable", 503, "Service unavailable", 13),
    ProblemType("internal-error", 500, "Internal error", 1),
    # center commerce (issue 11)
    ProblemType("device-suspect", 403, "The device reused a state counter (cloned or rolled back)", 8),
    ProblemType("binding-conflict", 409, "The device id is bound to other keys", 10),
    ProblemType("idempotency-mismatch", 422, "The idempotency key was used with another request body", 2),
    ProblemType("already-redeemed", 409, "The credit code was already redeemed", 10),
    # 10 like the `conflict` it replaces; terminal_cli names it OrderExpired (exit 31)
    ProblemType("order-expired", 410, "The order expired before its first delivery", 10),
]
REGISTRY: dict[str, ProblemType] = {t.slug: t for t in _TYPES}
BY_URI: dict[str, ProblemType] = {t.uri: t for t in _TYPES}


def problem(slug: str) -> ProblemType:
    """Look up a registered problem type; an unknown slug is a programming error."""
    return REGISTRY[slug]


class ProblemDetails(BaseModel):
    """The RFC 9457 body. Extension members (tries_left, retry_after, ...) are allowed."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None


def problem_body(slug: str, detail: str | None = None, **extensions: Any) -> dict[str, Any]:
    t = REGISTRY[slug]
    body: dict[str, Any] = {"type": t.uri, "title": t.title, "status": t.status}
    if detail is not None:
        body["detail"] = detail
    body.update(extensions)
    return body


def exit_code_for(type_uri: str) -> int:
    """terminal_cli's exit code for a problem type; unknown types are internal errors (1)."""
    t = BY_URI.get(type_uri)
    return t.exit_code if t else 1
