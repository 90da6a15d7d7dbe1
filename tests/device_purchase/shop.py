"""The device purchase tests' shop: a live device (tests/device_api/live.py) enrolled through the real center
(tests/support/center.py, shared by the session) and funded with a credit code the center issued; items are
registered at that center and every order and content stream is the center's, posted to the device over
real HTTP. Orders the center never signs (expired, foreign, members that lie) come from `shop.forger`."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from protocol.keys import public_key_from_jwk
from tests.device_api.live import LiveDevice, Snapshot, auth
from tests.support.center import Account, RealCenter, enroll, ok
from tests.support.forger import Forger

FUNDS = 100_000


@dataclass
class Shop:
    live: LiveDevice
    token: str
    center: RealCenter
    account: Account
    forger: Forger  # signs with the real center's keys: for what it must never produce
    kem: ec.EllipticCurvePublicKey
    payer: ec.EllipticCurvePublicKey
    items: dict[str, str] = field(default_factory=dict)  # the test's label -> the center's item_id
    sha256: dict[str, str] = field(default_factory=dict)  # label -> the registered content's digest

    @property
    def device_id(self) -> str:
        return self.live.device.device_id

    @property
    def headers(self) -> dict[str, str]:
        return auth(self.token)

    def item(self, label: str, content: bytes | None = None, price: int = 100) -> str:
        """The center's item_id for `label`, registered with `content` at `price` the first time."""
        if label not in self.items:
            assert content is not None, f"item {label!r} is not registered yet"
            self.items[label] = self.center.add_content(content, title=label, price=price)
            self.sha256[label] = hashlib.sha256(content).hexdigest()
        elif content is not None:
            assert hashlib.sha256(content).hexdigest() == self.sha256[label], f"{label!r} has other content"
        return self.items[label]

    def content_path(self, label: str) -> str:
        return f"/v1/library/{self.items.get(label, label)}/content"

    def order(self, label: str, content: bytes | None = None, price: int = 100) -> tuple[str, bytes]:
        """A fresh order from the real center for the item `label` and its content stream."""
        answer, body = self.account.bought(self.item(label, content, price))
        order: str = answer["order"]
        return order, body

    def post(
        self,
        order: str,
        body: bytes | Iterable[bytes],
        *,
        mode: str | None = None,
        repurchase: bool = False,
    ) -> httpx.Response:
        params: dict[str, str] = {}
        if mode is not None:
            params["mode"] = mode
        if repurchase:
            params["repurchase"] = "true"
        content = body if isinstance(body, bytes) else _iter(body)
        return self.live.client.post(
            "/v1/purchases",
            params=params,
            content=content,
            headers={**self.headers, "Coffer-Order": order, "Content-Type": "application/octet-stream"},
        )

    def buy(self, label: str, content: bytes | None = None, price: int = 100, **kw: Any) -> dict[str, Any]:
        order, body = self.order(label, content, price)
        r = self.post(order, body, **kw)
        assert r.status_code == 200, r.text
        answer: dict[str, Any] = r.json()
        return answer

    def settle(self, answer: dict[str, Any]) -> str:
        """Relay a purchase's payment to the center: its receipt (not yet given to the device)."""
        return self.account.pay(answer["order_id"], answer["payment"])

    def credit(self, amount: int) -> str:
        """A prepaid credit: a code the center issued, redeemed over HTTP (not yet given to the device)."""
        return self.account.redeem(self.center.issue_code(self.device_id, amount))

    def wallet(self) -> dict[str, Any]:
        r = self.live.client.get("/v1/wallet", headers=self.headers)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def balance(self) -> int:
        amount: int = self.wallet()["purses"]["prepaid"].get("JPY", 0)
        return amount

    def get(self, path: str, **headers: str) -> httpx.Response:
        return self.live.client.get(path, headers={**self.headers, **headers})

    def snapshot(self) -> Snapshot:
        return self.live.snapshot()


def _iter(chunks: Iterable[bytes]) -> Iterator[bytes]:
    yield from chunks


def open_shop(
    live: LiveDevice, token: str, center: RealCenter, http: httpx.Client, funds: int = FUNDS
) -> Shop:
    """Enroll `live` through the real center and fund it with `funds` (a redeemed code)."""
    account = enroll(http, live.client, token)
    identity = live.identity()
    shop = Shop(
        live,
        token,
        center,
        account,
        Forger.of(center),
        public_key_from_jwk(identity["kem_jwk"]),
        public_key_from_jwk(identity["payment_jwk"]),
    )
    if funds:
        ok(live.client.post("/v1/credits", json={"credit": shop.credit(funds)}, headers=auth(token)))
    return shop
