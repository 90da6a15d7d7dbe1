"""A typed client of the device API (docs/device-api.md, docs/device-purchases.md) over httpx.

terminal_cli never imports device_os (DESIGN.md: programs import `protocol` only), so the answers are read
into the small models below, which ignore members they do not know (a newer device may add some). Every call
translates failures once: transport errors → DeviceUnreachable, problem+json → the errors.py tree.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict

from terminal_cli._http import USER_AGENT, check, check_device_url, transport_errors
from terminal_cli.errors import DeviceLocked

Mode = Literal["now", "deferred"]
#: A purchase may stream a large item over a slow link: no read timeout on the body, a generous one on
#: the answer (the device commits after the last byte).
_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
_PURCHASE_TIMEOUT = httpx.Timeout(300.0, connect=5.0)


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Health(_Answer):
    phase: str
    device_id: str | None
    tampered: bool
    tamper_reason: str | None = None
    software_version: str
    #: How the board pins the center root: pinned (configured), trust-first, none (older boards: absent).
    root_pinning: str | None = None


class Unlocked(_Answer):
    token: str
    auto_lock_seconds: int


class Purses(_Answer):
    prepaid: dict[str, int] = {}
    coupons: list[dict[str, Any]] = []
    tickets: list[dict[str, Any]] = []


class Wallet(_Answer):
    device_id: str
    counter: int
    time_floor: int
    purses: Purses
    outbox: list[str] = []
    enrolled: bool


class OutboxEntry(_Answer):
    order_id: str
    item_id: str
    counter: int
    payment: str


class LibraryItem(_Answer):
    item_id: str
    order_id: str
    mode: Mode
    length: int
    sha256: str


class PurchaseAnswer(_Answer):
    order_id: str
    payment: str
    counter: int


class DeviceClient:
    """One board, reached at `base_url` (its USB link address). `token` is the bearer from `unlock`."""

    def __init__(
        self, base_url: str, *, token: str | None = None, transport: httpx.BaseTransport | None = None
    ):
        self.base_url = check_device_url(base_url)
        self.token = token
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=_TIMEOUT,
            transport=transport,
            headers={"User-Agent": USER_AGENT},
            trust_env=False,  # the USB link never goes through a proxy
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DeviceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------------------------------
    def _auth(self) -> dict[str, str]:
        if self.token is None:
            raise DeviceLocked.locally("device-locked", "no token for it on this PC")
        return {"Authorization": f"Bearer {self.token}"}

    def _request(self, method: str, path: str, *, auth: bool = True, **kwargs: Any) -> httpx.Response:
        headers = {**kwargs.pop("headers", {}), **(self._auth() if auth else {})}
        with transport_errors("device", self.base_url):
            response = self._http.request(method, path, headers=headers, **kwargs)
        return check("device", response)

    # -- flow 2: health, setup, unlock -------------------------------------------------------------------
    def health(self) -> Health:
        return Health.model_validate_json(self._request("GET", "/v1/health", auth=False).content)

    def identity(self) -> dict[str, Any]:
        """What the center needs for flow 3, relayed as is."""
        answer: dict[str, Any] = self._request("GET", "/v1/identity", auth=False).json()
        return answer

    def setup(self, pin: str) -> Health:
        self._request("POST", "/v1/setup", auth=False, json={"pin": pin})
        return self.health()

    def unlock(self, pin: str) -> Unlocked:
        answer = Unlocked.model_validate_json(
            self._request("POST", "/v1/unlock", auth=False, json={"pin": pin}).content
        )
        self.token = answer.token
        return answer

    def lock(self) -> None:
        self._request("POST", "/v1/lock")
        self.token = None

    def change_pin(self, old_pin: str, new_pin: str) -> None:
        self._request("POST", "/v1/pin", json={"old_pin": old_pin, "new_pin": new_pin})

    # -- flow 3: enrollment ------------------------------------------------------------------------------
    def activate(self, credential_blob: str, encrypted_secret: str) -> str:
        body = {"credential_blob": credential_blob, "encrypted_secret": encrypted_secret}
        secret: str = self._request("POST", "/v1/activate", json=body).json()["secret"]
        return secret

    def enroll(self, enrollment: str, root_jwk: dict[str, Any]) -> dict[str, Any]:
        body = {"enrollment": enrollment, "root_jwk": root_jwk}
        answer: dict[str, Any] = self._request("POST", "/v1/enrollment", json=body).json()
        return answer

    # -- wallet, credits, statements ---------------------------------------------------------------------
    def wallet(self) -> Wallet:
        return Wallet.model_validate_json(self._request("GET", "/v1/wallet").content)

    def apply_credit(self, credit: str) -> dict[str, Any]:
        answer: dict[str, Any] = self._request("POST", "/v1/credits", json={"credit": credit}).json()
        return answer

    def statement(self, nonce: str) -> str:
        statement: str = self._request("GET", "/v1/statement", params={"nonce": nonce}).json()["statement"]
        return statement

    # -- flow 5: purchases, receipts, library ------------------------------------------------------------
    def purchase(
        self, order: str, body: Iterable[bytes], length: int, *, mode: Mode = "now", repurchase: bool = False
    ) -> PurchaseAnswer:
        """Stream the center's content stream (`body`, exactly `length` bytes) into the device's import."""
        headers = {
            "Coffer-Order": order,
            "Content-Type": "application/octet-stream",
            "Content-Length": str(length),
        }
        params = {"mode": mode, **({"repurchase": "true"} if repurchase else {})}
        response = self._request(
            "POST", "/v1/purchases", params=params, headers=headers, content=body, timeout=_PURCHASE_TIMEOUT
        )
        return PurchaseAnswer.model_validate_json(response.content)

    def receipt(self, receipt: str) -> dict[str, Any]:
        answer: dict[str, Any] = self._request("POST", "/v1/receipts", json={"receipt": receipt}).json()
        return answer

    def outbox(self) -> list[OutboxEntry]:
        entries = self._request("GET", "/v1/outbox").json()["entries"]
        return [OutboxEntry.model_validate(e) for e in entries]

    def library(self) -> list[LibraryItem]:
        items = self._request("GET", "/v1/library").json()["items"]
        return [LibraryItem.model_validate(i) for i in items]

    def delete(self, item_id: str) -> None:
        self._request("DELETE", f"/v1/library/{item_id}")

    @contextmanager
    def content(self, item_id: str) -> Iterator[Iterator[bytes]]:
        """The item's plaintext as chunks, streamed (never whole in memory)."""
        request = self._http.build_request(
            "GET", f"/v1/library/{item_id}/content", headers=self._auth(), timeout=_PURCHASE_TIMEOUT
        )
        with transport_errors("device", self.base_url):
            response = self._http.send(request, stream=True)
            try:
                check("device", response)
                yield response.iter_bytes(1024 * 1024)
            finally:
                response.close()
