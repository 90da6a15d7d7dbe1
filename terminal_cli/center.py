"""A typed client of the center API (DESIGN.md "Center API"; models from protocol/api/catalog.py and
protocol/center_api.py) over httpx. https:// is required unless the center is on loopback (_http.py); TLS is
verified (a custom CA bundle may be named). Failures are translated once: transport → CenterUnreachable,
problem+json → the errors.py tree.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from pydantic import ValidationError

from protocol.api.catalog import ItemDetail, ItemList, ItemSummary, WellKnownCoffer
from protocol.center_api import (
    IDEMPOTENCY_HEADER,
    ActivateRequest,
    CreditAnswer,
    DeviceIdentity,
    EnrollmentAnswer,
    EnrollmentChallenge,
    OrderAnswer,
    OrderRequest,
    OrderStatus,
    PaymentAnswer,
    PaymentRequest,
    RedeemRequest,
    StatementAnswer,
    StatementRequest,
)
from terminal_cli._http import USER_AGENT, check, check_center_url, transport_errors
from terminal_cli.errors import NotEnrolled, TerminalError

_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
CHUNK = 1024 * 1024


class CenterClient:
    """The center at `base_url`. `device_token` (from enrollment) authorizes orders, payments, statements."""

    def __init__(
        self,
        base_url: str,
        *,
        device_token: str | None = None,
        verify: str | bool = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = check_center_url(base_url)
        self.device_token = device_token
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=_TIMEOUT,
            verify=verify,
            transport=transport,
            headers={"User-Agent": USER_AGENT},
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CenterClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def require_token(self) -> str:
        """The device's order token from enrollment; NotEnrolled when this PC has none for this center."""
        if self.device_token is None:
            raise NotEnrolled(f"this PC holds no token of {self.base_url} for the device")
        return self.device_token

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.require_token()}"}

    def _request(self, method: str, path: str, *, auth: bool = False, **kwargs: Any) -> httpx.Response:
        headers = {**kwargs.pop("headers", {}), **(self._auth() if auth else {})}
        with transport_errors("center", self.base_url):
            response = self._http.request(method, path, headers=headers, **kwargs)
        return check("center", response)

    # -- public --------------------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        answer: dict[str, Any] = self._request("GET", "/v1/health").json()
        return answer

    def well_known(self) -> WellKnownCoffer:
        return WellKnownCoffer.model_validate_json(self._request("GET", "/.well-known/coffer").content)

    def items(self, *, limit: int = 100) -> Iterator[ItemSummary]:
        """Every catalog item, oldest first, page after page."""
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
            page = ItemList.model_validate_json(self._request("GET", "/v1/items", params=params).content)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def item(self, item_id: str) -> ItemDetail:
        return ItemDetail.model_validate_json(self._request("GET", f"/v1/items/{item_id}").content)

    @contextmanager
    def download(self, path: str, *, start: int = 0, auth: bool = False) -> Iterator[httpx.Response]:
        """A streamed GET of `path` from byte `start` (206 expected when start > 0)."""
        headers = {"Range": f"bytes={start}-"} if start else {}
        if auth:
            headers |= self._auth()
        request = self._http.build_request("GET", path, headers=headers)
        with transport_errors("center", self.base_url):
            response = self._http.send(request, stream=True)
        try:
            check("center", response)
            yield response
        finally:
            response.close()

    # -- enrollment (flow 3) ---------------------------------------------------------------------------
    def register_device(self, identity: dict[str, Any]) -> EnrollmentChallenge:
        """Relay the device's identity: the members the center's model declares (a newer device may publish
        more, e.g. how it pins the center root, which the center does not take)."""
        known = {k: v for k, v in identity.items() if k in DeviceIdentity.model_fields}
        try:
            body = DeviceIdentity.model_validate(known).model_dump(mode="json")
        except ValidationError as exc:
            raise TerminalError(f"device: its identity is not what the center expects: {exc}") from exc
        answer = self._request("POST", "/v1/devices", json=body)
        return EnrollmentChallenge.model_validate_json(answer.content)

    def activate_device(self, device_id: str, challenge_id: str, secret: str) -> EnrollmentAnswer:
        body = ActivateRequest(challenge_id=challenge_id, secret=secret).model_dump()
        answer = self._request("POST", f"/v1/devices/{device_id}/activate", json=body)
        return EnrollmentAnswer.model_validate_json(answer.content)

    # -- credits (flow 6) --------------------------------------------------------------------------------
    def redeem(self, code: str, device_id: str) -> CreditAnswer:
        body = RedeemRequest(code=code, device_id=device_id).model_dump()
        return CreditAnswer.model_validate_json(
            self._request("POST", "/v1/credits/redeem", auth=True, json=body).content
        )

    # -- orders (flow 5) ---------------------------------------------------------------------------------
    def create_order(self, item_id: str, device_id: str, idempotency_key: str) -> OrderAnswer:
        body = OrderRequest(item_id=item_id, device_id=device_id).model_dump()
        headers = {IDEMPOTENCY_HEADER: idempotency_key}
        answer = self._request("POST", "/v1/orders", auth=True, json=body, headers=headers)
        return OrderAnswer.model_validate_json(answer.content)

    def order(self, order_id: str) -> OrderStatus:
        return OrderStatus.model_validate_json(
            self._request("GET", f"/v1/orders/{order_id}", auth=True).content
        )

    def pay(self, order_id: str, payment: str) -> PaymentAnswer:
        body = PaymentRequest(payment=payment).model_dump()
        answer = self._request("POST", f"/v1/orders/{order_id}/payment", auth=True, json=body)
        return PaymentAnswer.model_validate_json(answer.content)

    # -- statements (flow 7) -----------------------------------------------------------------------------
    def post_statement(self, statement: str) -> StatementAnswer:
        body = StatementRequest(statement=statement).model_dump()
        return StatementAnswer.model_validate_json(
            self._request("POST", "/v1/statements", json=body, auth=True).content
        )
