"""The lean order and payment path (center.api.lean_orders) against the FastAPI routes it stands in front of.

Both answer from one app and one database (as in production: the lean layer shares the app's context and
token hints). Every answer is compared byte for byte (status, the raw header list in order, body) with the
route's; a recorder under the lean layer shows which requests the lean path answered itself and which it
handed on, so a comparison cannot pass merely because everything fell through. An order's answer is random
(order id, Ke, signature), so a new order is compared through its idempotent replay: the lean path's 201 and
the route's 200 for the same key carry the same bytes, and each path's replay answers identically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from center.api.app import create_app
from center.api.lean_orders import LeanOrders
from center.api.security import security_headers
from center.services.catalog import CatalogService
from center.settings import CenterSettings
from tests.center.commerce import Center, SoftDevice
from tests.center.conftest import AppClient, add, catalog_for
from tests.center.test_lean_items import Recorder

PRICE = 500


class Pair:
    """The FastAPI app alone (`plain`) and the lean layer over the same app (`lean`, `recorder` between)."""

    def __init__(self, settings: CenterSettings) -> None:
        app = create_app(settings, lean_orders=False)
        self.app = app
        self.recorder = Recorder(app)
        self.plain = AppClient(app)
        self.lean = AppClient(LeanOrders(self.recorder, app.state.center, security_headers(hsts=False)))
        self.center = Center(settings, app)  # its helpers (devices, funding, ledger) on this app

    def lean_request(self, method: str, url: str, **kwargs: Any) -> tuple[httpx.Response, bool]:
        before = len(self.recorder.seen)
        response = self.lean.request(method, url, **kwargs)
        return response, len(self.recorder.seen) == before

    def same(self, method: str, url: str, **kwargs: Any) -> tuple[httpx.Response, bool]:
        """Both answers, asserted identical; the lean one and whether the lean layer answered it itself."""
        lean, answered = self.lean_request(method, url, **kwargs)
        plain = self.plain.request(method, url, **kwargs)
        assert _wire(lean) == _wire(plain), url
        return lean, answered


def _wire(r: httpx.Response) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    return r.status_code, r.headers.raw, r.content


def _order(device: SoftDevice, item: str, key: str, **extra: Any) -> dict[str, Any]:
    headers = {**device.headers, "Idempotency-Key": key, **extra.pop("headers", {})}
    body = extra.pop("json", {"item_id": item, "device_id": device.device_id})
    return {"json": body, "headers": headers, **extra}


@pytest.fixture
def catalog(settings: CenterSettings) -> CatalogService:
    return catalog_for(settings)  # the database migrated before the app is built


@pytest.fixture
def pair(settings: CenterSettings, catalog: CatalogService) -> Pair:
    return Pair(settings)


@pytest.fixture
def item(catalog: CatalogService, tmp_path: Path) -> str:
    blob = tmp_path / "content.txt"
    blob.write_text("lean path content\n" * 500)
    return add(catalog, blob, title="Data", price=PRICE)


def test_an_order_is_answered_exactly_as_the_route(pair: Pair, item: str) -> None:
    device = pair.center.device()
    pair.center.fund(device, 3 * PRICE)
    # a token this process has not seen goes to the route, which looks it up and remembers it
    first, answered = pair.lean_request("POST", "/v1/orders", **_order(device, item, "first-order"))
    assert (answered, first.status_code) == (False, 201)
    made, answered = pair.lean_request("POST", "/v1/orders", **_order(device, item, "lean-order-1"))
    assert (answered, made.status_code) == (True, 201)
    replayed = pair.plain.request("POST", "/v1/orders", **_order(device, item, "lean-order-1"))
    assert replayed.status_code == 200
    assert (made.headers.raw, made.content) == (replayed.headers.raw, replayed.content)
    assert [name for name, _ in made.headers.raw] == [name for name, _ in first.headers.raw]
    again, answered = pair.same("POST", "/v1/orders", **_order(device, item, "lean-order-1"))
    assert (answered, again.status_code, again.content) == (True, 200, made.content)
    # refusals: the one problem+json handler, through the lean path
    other_item = {"item_id": "itm_other", "device_id": device.device_id}
    other_device = {"item_id": item, "device_id": "dev_" + "a" * 32}
    for kwargs, status in (
        (_order(device, item, "lean-order-1", json=other_item), 422),
        (_order(device, "itm_" + "a" * 16, "no-such-item"), 404),
        (_order(device, item, "another-device", json=other_device), 422),
    ):
        before = pair.center.ledger_state()
        r, answered = pair.same("POST", "/v1/orders", **kwargs)
        assert (answered, r.status_code) == (True, status), r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert pair.center.ledger_state() == before
    third, answered = pair.lean_request("POST", "/v1/orders", **_order(device, item, "third-order"))
    assert (answered, third.status_code) == (True, 201)
    broke, answered = pair.lean_request("POST", "/v1/orders", **_order(device, item, "fourth-order"))
    assert (answered, broke.status_code) == (True, 402)
    plain = pair.plain.request("POST", "/v1/orders", **_order(device, item, "fifth-order"))
    assert _wire(broke) == _wire(plain)
    pair.app.state.center.admin.revoke(device.device_id)
    revoked, answered = pair.same("POST", "/v1/orders", **_order(device, item, "after-revoke"))
    assert (answered, revoked.status_code) == (True, 403)


def test_requests_it_cannot_read_with_certainty_go_to_the_route(pair: Pair, item: str) -> None:
    device = pair.center.device()
    pair.center.fund(device, PRICE)
    learn = pair.plain.request("POST", "/v1/orders", **_order(device, item, "learn-the-token"))
    assert learn.status_code == 201
    stranger = SoftDevice()  # a token no device has
    as_json = {"Content-Type": "application/json"}
    cases: list[dict[str, Any]] = [
        _order(device, item, "short"),  # an Idempotency-Key the route refuses (422)
        {"json": {"item_id": item, "device_id": device.device_id}, "headers": device.headers},  # none
        _order(device, item, "extra-member", json={"item_id": item, "device_id": device.device_id, "x": "1"}),
        _order(device, item, "not-a-string", json={"item_id": 5, "device_id": device.device_id}),
        _order(device, item, "not-an-object", json=[item, device.device_id]),
        _order(device, item, "bad-item-id!", json={"item_id": "no spaces", "device_id": device.device_id}),
        _order(device, item, "text-body", json=None, content=b"{", headers=as_json),
        _order(device, item, "text-type", json=None, content=b"{}", headers={"Content-Type": "text/plain"}),
        _order(device, item, "lowercase-scheme", headers={"Authorization": f"bearer {device.token}"}),
        _order(stranger, item, "unknown-token"),
        {**_order(device, item, "with-a-query"), "params": {"x": "1"}},
    ]
    for kwargs in cases:
        before = pair.center.ledger_state()
        r, answered = pair.same("POST", "/v1/orders", **kwargs)
        assert not answered, kwargs
        assert r.status_code in (401, 402, 422), r.text  # funded for one order only: the query one is 402
        assert pair.center.ledger_state() == before


def test_a_payment_is_answered_exactly_as_the_route(pair: Pair, item: str) -> None:
    device = pair.center.device()
    pair.center.fund(device, 3 * PRICE)
    order = pair.plain.request("POST", "/v1/orders", **_order(device, item, "to-be-paid")).json()
    path = f"/v1/orders/{order['order_id']}/payment"
    c = pair.center.commerce
    garbage, answered = pair.same("POST", path, json={"payment": "AAAA"}, headers=device.headers)
    assert (answered, garbage.status_code) == (True, 422)
    sealed = device.payment(c, order["order"])
    paid, answered = pair.lean_request("POST", path, json={"payment": sealed}, headers=device.headers)
    assert (answered, paid.status_code) == (True, 200)
    plain = pair.plain.request("POST", path, json={"payment": sealed}, headers=device.headers)
    assert _wire(paid) == _wire(plain)
    again, answered = pair.same("POST", path, json={"payment": sealed}, headers=device.headers)
    assert (answered, again.content) == (True, paid.content)
    other, answered = pair.same(
        "POST", path, json={"payment": device.payment(c, order["order"])}, headers=device.headers
    )
    assert (answered, other.status_code) == (True, 409)
    stranger = pair.center.device()
    pair.plain.request("POST", "/v1/orders", **_order(stranger, item, "learn-the-token"))  # 402, remembered
    theirs, answered = pair.same("POST", path, json={"payment": sealed}, headers=stranger.headers)
    assert (answered, theirs.status_code) == (True, 404)
    for body in ({"payment": "not base64url!"}, {"payment": sealed, "x": "1"}, {"payment": 1}):
        r, answered = pair.same("POST", path, json=body, headers=device.headers)
        assert (answered, r.status_code) == (False, 422)
    dotted = "/v1/orders/a.b/payment"
    r, answered = pair.same("POST", dotted, json={"payment": sealed}, headers=device.headers)
    assert (answered, r.status_code) == (False, 422)
    assert pair.center.report()["checks"]["ok"]


def test_an_unexpected_error_is_answered_as_the_route_answers_it(
    pair: Pair, item: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Starlette's outermost handler answers an unexpected exception: 500 internal-error, without the
    security headers (they are added inside the stack); the lean path answers it the same way."""
    device = pair.center.device()
    pair.center.fund(device, PRICE)
    learn = pair.plain.request("POST", "/v1/orders", **_order(device, item, "learn-the-token"))
    assert learn.status_code == 201

    def broken(*_args: object) -> None:
        raise RuntimeError("a bug")

    async def broken_async(*_args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(
        pair.app.state.center.orders, "create", broken
    )  # the route's (PostgreSQL: lean's too)
    monkeypatch.setattr(pair.app.state.center.orders, "create_async", broken_async)  # lean's on SQLite
    r, answered = pair.same("POST", "/v1/orders", **_order(device, item, "broken-order"))
    assert (answered, r.status_code) == (True, 500)
    assert "content-security-policy" not in r.headers
