"""The center's side of flow 5 for the device purchase tests: a live device (tests/device_api/live.py)
enrolled with `tests.device.center.TestCenter`, funded; helpers post orders and streams over real HTTP."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from protocol import hpke, jws
from protocol.b64 import b64url_encode
from protocol.keys import public_key_from_jwk
from protocol.messages import Order
from protocol.money import Money
from tests.device.center import DAY, TestCenter
from tests.device_api.live import LiveDevice, Snapshot, auth

FUNDS = 100_000


@dataclass
class Shop:
    live: LiveDevice
    token: str
    center: TestCenter
    kem: ec.EllipticCurvePublicKey
    payer: ec.EllipticCurvePublicKey

    @property
    def device_id(self) -> str:
        return self.live.device.device_id

    @property
    def headers(self) -> dict[str, str]:
        return auth(self.token)

    def order(self, item_id: str, content: bytes, price: int = 100, **kw: Any) -> tuple[str, bytes]:
        return self.center.order(self.device_id, self.kem, item_id, price, content, **kw)

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

    def buy(self, item_id: str, content: bytes, price: int = 100, **kw: Any) -> dict[str, Any]:
        mode = kw.pop("mode", None)
        order, stream = self.order(item_id, content, price, **kw)
        r = self.post(order, stream, mode=mode)
        assert r.status_code == 200, r.text
        answer: dict[str, Any] = r.json()
        return answer

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


def open_shop(live: LiveDevice, token: str, center: TestCenter, funds: int = FUNDS) -> Shop:
    device_id = live.device.device_id
    r = live.client.post(
        "/v1/enrollment",
        json={"enrollment": center.enrollment(device_id), "root_jwk": center.root_jwk},
        headers=auth(token),
    )
    assert r.status_code == 200, r.text
    if funds:
        r = live.client.post(
            "/v1/credits", json={"credit": center.credit(device_id, amount=funds)}, headers=auth(token)
        )
        assert r.status_code == 200, r.text
    identity = live.identity()
    return Shop(
        live,
        token,
        center,
        public_key_from_jwk(identity["kem_jwk"]),
        public_key_from_jwk(identity["payment_jwk"]),
    )


def signed_order(
    center: TestCenter,
    device_id: str,
    kem: ec.EllipticCurvePublicKey,
    *,
    ke: bytes,
    content_sha256: str,
    content_length: int,
    item_id: str = "item",
    price: int = 100,
    order_id: str | None = None,
    aead: str = "aes-256-gcm",
    segment_size: int = 4096,
    iat: int | None = None,
    exp: int | None = None,
) -> str:
    """An order with every member chosen by the test (TestCenter.order derives hash and length itself)."""
    order_id = order_id or center.next_id("ord")
    iat = center.now if iat is None else iat
    wrapped = hpke.seal(kem, ke, info=hpke.content_key_info(order_id))
    return jws.sign(
        Order(
            iss="center",
            iat=iat,
            order_id=order_id,
            item_id=item_id,
            device_id=device_id,
            price=Money(amount=price, currency="JPY"),
            content_sha256=content_sha256,
            content_length=content_length,
            aead=aead,
            segment_size=segment_size,
            wrapped_key=b64url_encode(wrapped),
            exp=iat + DAY if exp is None else exp,
        ),
        jws.SoftwareSigner(center.signing),
    )
