"""The one exception handler of the device API (STYLE.md 8): every error becomes problem+json (RFC 9457).

`handle(request, exc)` maps, in this order: this layer's `ApiError`s, the device core's `DeviceError`s, the
TPM adapter's `TpmError`s, `protocol`'s `ProtocolError`s, the errors the center shares
(`protocol.http.asgi.framework_problem`: a 416 Range, FastAPI's request validation, Starlette's HTTP errors
404, 405, 413, 400, ...), and anything else (500 `internal-error`). FastAPI calls it for validation and HTTP
errors; the gate (`device_os.api.gate`) calls it for everything that escapes a route. Bodies carry the
registry's `type`/`title`/`status`, a `detail` written by our own code (never an input value, a stack trace
or a secret), and extension members (`tries_left`, `retry_after`, `errors`).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from device_os.api.errors import ApiError
from device_os.errors import DeviceError, NotProvisioned, PinLockout, WrongPin
from device_os.tpm import Lockout, TpmError, TpmNotProvisioned, TpmUnavailable, TpmWrongPin
from protocol.errors import AttestationError, EncodingError, JwsError, ProtocolError
from protocol.http.asgi import framework_problem, problem_response
from protocol.problems import REGISTRY

log = logging.getLogger("device_os.api")

UNAVAILABLE_RETRY_AFTER = 5


def _device_error(exc: DeviceError) -> Response:
    slug = exc.slug if exc.slug in REGISTRY else "internal-error"
    if isinstance(exc, WrongPin):
        extensions: dict[str, Any] = {} if exc.tries_left is None else {"tries_left": exc.tries_left}
        return problem_response(slug, "wrong PIN", **extensions)
    if isinstance(exc, PinLockout):
        return problem_response(
            slug, str(exc), {"Retry-After": str(exc.retry_after)}, retry_after=exc.retry_after
        )
    if slug == "internal-error":
        log.error("device error %s", type(exc).__name__)
        return problem_response(slug)
    if slug == "service-unavailable":
        return problem_response(slug, str(exc), {"Retry-After": str(UNAVAILABLE_RETRY_AFTER)})
    return problem_response(slug, str(exc))


def _tpm_error(exc: TpmError) -> Response:
    if isinstance(exc, TpmNotProvisioned):  # the same condition, the same answer as the core's NotProvisioned
        return _device_error(NotProvisioned("the device is not provisioned"))
    if isinstance(exc, TpmWrongPin):
        return problem_response("wrong-pin", "wrong PIN", tries_left=exc.tries_left)
    if isinstance(exc, Lockout):
        return problem_response(
            "pin-lockout", str(exc), {"Retry-After": str(exc.retry_after)}, retry_after=exc.retry_after
        )
    if isinstance(exc, TpmUnavailable):
        log.warning("TPM unavailable")
        return problem_response(
            "service-unavailable", "the TPM is unavailable", {"Retry-After": str(UNAVAILABLE_RETRY_AFTER)}
        )
    log.error("TPM error %s (rc 0x%x)", type(exc).__name__, exc.rc)
    return problem_response("internal-error")


def _protocol_error(exc: ProtocolError) -> Response:
    if isinstance(exc, JwsError):
        return problem_response("invalid-signature", "a signed message is not acceptable")
    if isinstance(exc, AttestationError):
        return problem_response("attestation-failed", "the attestation material was rejected")
    if isinstance(exc, EncodingError):
        return problem_response("bad-request", "a member is not in the expected encoding")
    return problem_response("bad-request", type(exc).__name__)


async def handle(request: Request, exc: Exception) -> Response:
    """Map any exception to application/problem+json."""
    if isinstance(exc, ApiError):
        return problem_response(exc.slug, exc.detail, exc.headers)
    if isinstance(exc, DeviceError):
        return _device_error(exc)
    if isinstance(exc, TpmError):
        return _tpm_error(exc)
    if isinstance(exc, ProtocolError):
        return _protocol_error(exc)
    shared = framework_problem(exc)
    if shared is not None:
        return shared
    # No traceback in the log either: exception messages of libraries may quote input.
    log.error("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path)
    return problem_response("internal-error")
