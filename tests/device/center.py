"""A test-side center built from `protocol` only: root, key set, signed credits, orders, receipts.

Used by the device tests to play the center's part of flows 3, 5 and 6 (never imported by the product).
"""

from __future__ import annotations

import hashlib
import itertools
import os
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ec

from protocol import hpke, jws, stream
from protocol.b64 import b64url_decode, b64url_encode
from protocol.keys import jwk_from_public_key
from protocol.messages import Credit, Enrollment, Jwk, Keyset, Order, Payment, Receipt, message_hash
from protocol.money import Money

T0 = 1_800_000_000  # iat of the first messages (2027)
DAY = 86400


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@dataclass
class TestCenter:
    __test__ = False  # not a pytest class

    root: ec.EllipticCurvePrivateKey = field(default_factory=_key)
    signing: ec.EllipticCurvePrivateKey = field(default_factory=_key)
    payment: ec.EllipticCurvePrivateKey = field(default_factory=_key)
    version: int = 1
    now: int = T0
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.keyset = jws.sign(
            Keyset(
                iss="center",
                iat=self.now,
                version=self.version,
                signing_jwk=Jwk.from_public_key(self.signing.public_key()),
                payment_jwk=Jwk.from_public_key(self.payment.public_key()),
            ),
            jws.SoftwareSigner(self.root),
        )

    @property
    def root_jwk(self) -> dict[str, str]:
        return jwk_from_public_key(self.root.public_key())

    def _sign(self, payload: object) -> str:
        return jws.sign(payload, jws.SoftwareSigner(self.signing))  # type: ignore[arg-type]

    def next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids)}"

    def enrollment(self, device_id: str) -> str:
        return self._sign(
            Enrollment(
                iss="center",
                iat=self.now,
                device_id=device_id,
                keyset=self.keyset,
                device_token_hash=b64url_encode(hashlib.sha256(b"token").digest()),
            )
        )

    def credit(
        self,
        device_id: str,
        kind: str = "prepaid",
        amount: int | None = 1000,
        *,
        item_id: str | None = None,
        currency: str = "JPY",
        credit_id: str | None = None,
        iat: int | None = None,
        exp: int | None = None,
    ) -> str:
        iat = self.now if iat is None else iat
        return self._sign(
            Credit(
                iss="center",
                iat=iat,
                credit_id=credit_id or self.next_id("cr"),
                device_id=device_id,
                kind=kind,
                amount=None if kind == "ticket" else Money(amount=amount or 0, currency=currency),
                item_id=item_id if kind == "ticket" else None,
                exp=iat + 300 * DAY if exp is None else exp,
            )
        )

    def order(
        self,
        device_id: str,
        kem_public: ec.EllipticCurvePublicKey,
        item_id: str,
        price: int,
        content: bytes,
        *,
        currency: str = "JPY",
        order_id: str | None = None,
        aead: str = "aes-256-gcm",
        segment_size: int = 4096,
        iat: int | None = None,
        exp: int | None = None,
    ) -> tuple[str, bytes]:
        """A signed order and the center's content stream for it (fresh Ke, wrapped to the KEM key)."""
        order_id = order_id or self.next_id("ord")
        ke = os.urandom(32)
        wrapped = hpke.seal(kem_public, ke, info=hpke.content_key_info(order_id))
        iat = self.now if iat is None else iat
        token = self._sign(
            Order(
                iss="center",
                iat=iat,
                order_id=order_id,
                item_id=item_id,
                device_id=device_id,
                price=Money(amount=price, currency=currency),
                content_sha256=hashlib.sha256(content).hexdigest(),
                content_length=len(content),
                aead=aead,
                segment_size=segment_size,
                wrapped_key=b64url_encode(wrapped),
                exp=iat + DAY if exp is None else exp,
            )
        )
        return token, stream.encrypt(content, ke, aead=aead, segment_size=segment_size)

    def open_payment(self, order_id: str, sealed_b64: str) -> tuple[str, Payment]:
        token = hpke.open(self.payment, b64url_decode(sealed_b64), info=hpke.payment_info(order_id)).decode()
        return token, _unverified_payment(token)

    def receipt(self, device_id: str, order_id: str, sealed_b64: str, *, iat: int | None = None) -> str:
        token, _ = self.open_payment(order_id, sealed_b64)
        return self.receipt_for(device_id, order_id, message_hash(token), iat=iat)

    def receipt_for(self, device_id: str, order_id: str, payment_hash: str, *, iat: int | None = None) -> str:
        return self._sign(
            Receipt(
                iss="center",
                iat=self.now if iat is None else iat,
                order_id=order_id,
                device_id=device_id,
                payment_hash=payment_hash,
            )
        )


def _unverified_payment(token: str) -> Payment:
    return Payment.model_validate_json(b64url_decode(token.split(".")[1]))


def verify_payment(token: str, payer_public: ec.EllipticCurvePublicKey) -> Payment:
    return jws.verify(token, Payment, keys=payer_public, now=0)


def chunks(data: bytes, size: int = 7000) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]
