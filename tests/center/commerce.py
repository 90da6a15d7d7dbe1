"""Test support for the center's commerce: a center app over a real database, and a device whose keys live in
software. The center never talks to a TPM (it verifies evidence), so after enrollment a device is its bound
public keys; enrollment itself is tested against the real device service on swtpm (test_enrollment.py) and
the whole flow in tests/commerce/. A `SoftDevice` is bound by writing its row the way activation does."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import create_engine, func, select, text

from center.api.app import create_app
from center.db import tx
from center.db.commerce import Device, LedgerTransfer, LedgerTxn
from center.services.common import Commerce, canonical
from center.services.credits import CreditService, NewCredit
from center.settings import CenterSettings
from protocol import hpke, jws, pricing, stream
from protocol.b64 import b64url_decode, b64url_encode
from protocol.keys import device_id_for
from protocol.messages import Jwk, Order, Payment, Receipt, Statement, message_hash
from protocol.pricing import Purses
from tests.center.conftest import _ENGINES, AppClient, Postgres


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@dataclass
class SoftDevice:
    ak: ec.EllipticCurvePrivateKey = field(default_factory=_key)
    kem: ec.EllipticCurvePrivateKey = field(default_factory=_key)
    payer: ec.EllipticCurvePrivateKey = field(default_factory=_key)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    aead: str = "aes-256-gcm"
    counter: int = 10

    @property
    def device_id(self) -> str:
        return device_id_for(self.ak.public_key())

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def bind(self, commerce: Commerce) -> None:
        with tx.write(commerce.sessions) as session:
            session.add(
                Device(
                    device_id=self.device_id,
                    ek_hash=hashlib.sha256(self.device_id.encode()).hexdigest(),
                    ak_public=b64url_encode(self.device_id.encode()),
                    kem_jwk=canonical(Jwk.from_public_key(self.kem.public_key()).model_dump()),
                    payment_jwk=canonical(Jwk.from_public_key(self.payer.public_key()).model_dump()),
                    aead=self.aead,
                    token_hash=b64url_encode(hashlib.sha256(self.token.encode()).digest()),
                    state="active",
                    enrolled_at=0,
                    updated_at=0,
                )
            )

    def open_order(self, commerce: Commerce, order_jws: str) -> tuple[Order, bytes]:
        order = jws.verify(
            order_jws, Order, keys=commerce.keys.signing.public_key(), now=0, audience=self.device_id
        )
        ke = hpke.open(self.kem, b64url_decode(order.wrapped_key), info=hpke.content_key_info(order.order_id))
        return order, ke

    def payment(
        self,
        commerce: Commerce,
        order_jws: str,
        purses: Purses | None = None,
        *,
        counter: int | None = None,
        debits: tuple[pricing.Debit, ...] | None = None,
        signer: ec.EllipticCurvePrivateKey | None = None,
        order_id: str | None = None,
        iat: int | None = None,
    ) -> str:
        """The sealed payment for an order, as the device's outbox holds it (base64url)."""
        order = jws.verify(order_jws, Order, keys=commerce.keys.signing.public_key(), now=0)
        if debits is None:
            purses = purses or Purses(prepaid={order.price.currency: order.price.amount})
            debits = pricing.debits(order.price, purses, order.item_id)
        if counter is None:
            self.counter += 1
            counter = self.counter
        token = jws.sign(
            Payment(
                iss=self.device_id,
                iat=order.iat if iat is None else iat,
                order_id=order.order_id,
                order_hash=message_hash(order_jws),
                device_id=self.device_id,
                counter=counter,
                debits=debits,
            ),
            jws.SoftwareSigner(signer or self.payer),
        )
        target = order_id or order.order_id
        sealed = hpke.seal(commerce.keys.payment.public_key(), token.encode(), info=hpke.payment_info(target))
        return b64url_encode(sealed)

    def statement(
        self, commerce: Commerce, purses: Purses, outbox: tuple[str, ...] = (), nonce: str = ""
    ) -> str:
        return jws.sign(
            Statement(
                iss=self.device_id,
                iat=commerce.now(),
                device_id=self.device_id,
                counter=self.counter,
                purses=purses,
                outbox=outbox,
                nonce=nonce or secrets.token_urlsafe(16),
            ),
            jws.SoftwareSigner(self.payer),
        )


class Center:
    """The app (in process, ASGI transport) and its services on one database."""

    def __init__(self, settings: CenterSettings, app: Any = None) -> None:
        self.app = create_app(settings) if app is None else app
        _ENGINES.append(self.app.state.center.engine)
        self.client = AppClient(self.app)
        self.commerce: Commerce = self.app.state.center.commerce

    def device(self, **kw: Any) -> SoftDevice:
        device = SoftDevice(**kw)
        device.bind(self.commerce)
        return device

    def fund(self, device: SoftDevice, amount: int, currency: str = "JPY", kind: str = "prepaid") -> str:
        """Issue and redeem a credit over HTTP; returns its credit JWS."""
        code, _ = CreditService(self.commerce).issue(NewCredit(device.device_id, kind, amount, currency))
        r = self.client.request(
            "POST",
            "/v1/credits/redeem",
            json={"code": code, "device_id": device.device_id},
            headers=device.headers,
        )
        assert r.status_code == 200, r.text
        return str(r.json()["credit"])

    def order(self, device: SoftDevice, item_id: str, key: str | None = None) -> Any:
        return self.client.request(
            "POST",
            "/v1/orders",
            json={"item_id": item_id, "device_id": device.device_id},
            headers={**device.headers, "Idempotency-Key": key or secrets.token_urlsafe(12)},
        )

    def pay(self, device: SoftDevice, order_id: str, sealed: str) -> Any:
        return self.client.request(
            "POST", f"/v1/orders/{order_id}/payment", json={"payment": sealed}, headers=device.headers
        )

    def content(self, device: SoftDevice, order_id: str, range_header: str | None = None) -> Any:
        headers = dict(device.headers)
        if range_header:
            headers["Range"] = range_header
        return self.client.get(f"/v1/orders/{order_id}/content", headers=headers)

    def ledger_state(self) -> tuple[int, int]:
        """(ledger transactions, transfers): equal before and after a refused request."""
        with tx.read(self.commerce.sessions) as session:
            txns = session.scalar(select(func.count()).select_from(LedgerTxn)) or 0
            transfers = session.scalar(select(func.count()).select_from(LedgerTransfer)) or 0
            return txns, transfers

    def report(self) -> dict[str, Any]:
        return self.app.state.center.admin.report()  # type: ignore[no-any-return]

    def balance(self, account: str) -> int:
        for a in self.report()["accounts"]:
            if a["account"] == account:
                return int(a["available"])
        return 0


def verify_receipt(commerce: Commerce, receipt: str, device_id: str) -> Receipt:
    return jws.verify(receipt, Receipt, keys=commerce.keys.signing.public_key(), now=0, audience=device_id)


def decrypt(stream_bytes: bytes, ke: bytes) -> bytes:
    return stream.decrypt(stream_bytes, ke)


def problem(r: Any, slug: str, status: int) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    assert json.loads(r.text)["type"] == f"urn:coffer:problem:{slug}", r.text


def fresh_database(postgres: Postgres) -> str:
    """A new, empty database on the session's PostgreSQL server; returns its URL."""
    name = "coffer_" + secrets.token_hex(6)
    admin = create_engine(postgres.url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return postgres.url.rsplit("/", 1)[0] + "/" + name
