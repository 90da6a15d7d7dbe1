"""Errors raised by the HTTP layer itself (STYLE.md 8); `device_os.api.problems.handle` maps each to its slug.

ApiError
├── Unauthorized        no, malformed or dead bearer token (locked, restarted)   -> unauthorized (401)
├── MisdirectedRequest  the Host header is not the configured listen address    -> misdirected-request (421)
├── PayloadTooLarge     the body exceeds the route's limit                       -> payload-too-large (413)
├── UnsupportedMediaType  a JSON-only route's body is not JSON             -> unsupported-media-type (415)
└── ActivationFailed    TPM2_ActivateCredential refused the credential           -> attestation-failed (422)

The device core's errors (`device_os.errors`), the TPM adapter's (`device_os.tpm.errors`) and protocol's
(`protocol.errors`) are mapped by the same handler; these are only what the core cannot know about.
"""

from __future__ import annotations


class ApiError(Exception):
    slug = "internal-error"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}


class Unauthorized(ApiError):
    slug = "unauthorized"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="coffer-device"'})


class MisdirectedRequest(ApiError):
    slug = "misdirected-request"


class PayloadTooLarge(ApiError):
    slug = "payload-too-large"


class UnsupportedMediaType(ApiError):
    slug = "unsupported-media-type"


class ActivationFailed(ApiError):
    slug = "attestation-failed"
