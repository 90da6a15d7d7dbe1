"""The one test helper that signs what the real center must never produce.

Valid orders, credits, enrollments and receipts come from the real center (tests/support/center.py). A device
must also refuse what an honest center never sends: an expired or not-yet-valid order, one for another
device, a foreign signer's message, a key set signed by the wrong root, a receipt for an unknown order,
members that disagree with the content. The `Forger` builds those with `protocol` only, every member chosen by
the test, signed either with the real center's own keys (`Forger.of(center)`: the signature verifies, the
content is the lie) or with keys of its own (`Forger()`: a stranger center).

Two users need messages at times and with ids of their own choosing, which the real center does not sign
on demand: the wallet's unit tests on a software-key device the center cannot attest
(tests/device/test_wallet.py) and the power-cut campaign's plan (tests/device/harness.py). For them the
forger is a whole center: `open_payment` reads what a device sealed to its payment key and
`receipt_for_payment` settles it.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from protocol import hpke, jws, stream
from protocol.b64 import b64url_decode, b64url_encode
from protocol.keys import jwk_from_public_key
from protocol.messages import Credit, Enrollment, Jwk, Keyset, Order, Receipt, SignedPayload, message_hash
from protocol.money import Money

DAY = 86400
T0 = 1_800_000_000  # a forger's default "now" (2027): the iat of its key set and enrollment


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@dataclass
class Forger:
    """Signs with `signing` (its key set signed by `root`, or by `keyset_signer`: a forged key set)."""

    root: ec.EllipticCurvePrivateKey = field(default_factory=_key)
    signing: ec.EllipticCurvePrivateKey = field(default_factory=_key)
    payment: ec.EllipticCurvePrivateKey = field(default_factory=_key)
    issuer: str = "center"
    now: int = T0
    keyset: str = ""
    keyset_signer: ec.EllipticCurvePrivateKey | None = None
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        if not self.keyset:
            self.keyset = jws.sign(
                Keyset(
                    iss=self.issuer,
                    iat=self.now,
                    version=1,
                    signing_jwk=Jwk.from_public_key(self.signing.public_key()),
                    payment_jwk=Jwk.from_public_key(self.payment.public_key()),
                ),
                jws.SoftwareSigner(self.keyset_signer or self.root),
            )

    @classmethod
    def of(cls, center: Any, now: int | None = None) -> Forger:
        """The real center's keys (a `tests.support.center.RealCenter`), read from its data directory."""
        with center.commerce() as commerce:
            keys = commerce.keys
            issuer = commerce.issuer
        return cls(
            keys.root,
            keys.signing,
            keys.payment,
            issuer=issuer,
            now=int(commerce.now()) if now is None else now,
            keyset=keys.keyset_jws,
        )

    @property
    def root_jwk(self) -> dict[str, str]:
        return jwk_from_public_key(self.root.public_key())

    def next_id(self, prefix: str) -> str:
        return f"{prefix}forged-{next(self._ids)}"

    def sign(self, payload: SignedPayload, key: ec.EllipticCurvePrivateKey | None = None) -> str:
        return jws.sign(payload, jws.SoftwareSigner(key or self.signing))

    def resign(self, token: str, **changes: Any) -> str:
        """`token`'s payload with `changes`, signed again with this forger's key (a real message altered:
        another token hash, an older or newer iat, another device)."""
        kinds: dict[str, type[SignedPayload]] = {m.TYP: m for m in (Credit, Enrollment, Order, Receipt)}
        payload = kinds[jws.unverified_header(token)["typ"]].model_validate_json(
            b64url_decode(token.split(".")[1])
        )
        return self.sign(payload.model_copy(update=changes))

    def enrollment(self, device_id: str, token: bytes = b"device-token") -> str:
        return self.sign(
            Enrollment(
                iss=self.issuer,
                iat=self.now,
                device_id=device_id,
                keyset=self.keyset,
                device_token_hash=b64url_encode(hashlib.sha256(token).digest()),
            )
        )

    def enrollment_request(self, device_id: str) -> dict[str, object]:
        return {"enrollment": self.enrollment(device_id), "root_jwk": self.root_jwk}

    def credit(
        self,
        device_id: str,
        amount: int | None = 1000,
        *,
        kind: str = "prepaid",
        item_id: str | None = None,
        currency: str = "JPY",
        credit_id: str | None = None,
        iat: int | None = None,
        exp: int | None = None,
        signer: ec.EllipticCurvePrivateKey | None = None,
    ) -> str:
        iat = self.now if iat is None else iat
        return self.sign(
            Credit(
                iss=self.issuer,
                iat=iat,
                credit_id=credit_id or self.next_id("cr"),
                device_id=device_id,
                kind=kind,
                amount=None if kind == "ticket" else Money(amount=amount or 0, currency=currency),
                item_id=item_id if kind == "ticket" else None,
                exp=iat + 300 * DAY if exp is None else exp,
            ),
            signer,
        )

    def order(
        self,
        device_id: str,
        kem: ec.EllipticCurvePublicKey,
        *,
        ke: bytes,
        content_sha256: str,
        content_length: int,
        item_id: str = "item",
        price: int = 100,
        currency: str = "JPY",
        order_id: str | None = None,
        aead: str = "aes-256-gcm",
        segment_size: int = stream.DEFAULT_SEGMENT_SIZE,
        iat: int | None = None,
        exp: int | None = None,
        signer: ec.EllipticCurvePrivateKey | None = None,
    ) -> str:
        """An order with every member chosen by the test, Ke wrapped to `kem`."""
        order_id = order_id or self.next_id("ord")
        iat = self.now if iat is None else iat
        wrapped = hpke.seal(kem, ke, info=hpke.content_key_info(order_id))
        return self.sign(
            Order(
                iss=self.issuer,
                iat=iat,
                order_id=order_id,
                item_id=item_id,
                device_id=device_id,
                price=Money(amount=price, currency=currency),
                content_sha256=content_sha256,
                content_length=content_length,
                aead=aead,
                segment_size=segment_size,
                wrapped_key=b64url_encode(wrapped),
                exp=iat + DAY if exp is None else exp,
            ),
            signer,
        )

    def order_for(
        self,
        device_id: str,
        kem: ec.EllipticCurvePublicKey,
        content: bytes,
        *,
        aead: str = "aes-256-gcm",
        segment_size: int = stream.DEFAULT_SEGMENT_SIZE,
        **members: Any,
    ) -> tuple[str, bytes]:
        """An order for `content` and its content stream (fresh Ke), hash and length taken from `content`."""
        ke = os.urandom(32)
        token = self.order(
            device_id,
            kem,
            ke=ke,
            content_sha256=hashlib.sha256(content).hexdigest(),
            content_length=len(content),
            aead=aead,
            segment_size=segment_size,
            **members,
        )
        return token, stream.encrypt(content, ke, aead=aead, segment_size=segment_size)

    def receipt(self, device_id: str, order_id: str, payment_hash: str, *, iat: int | None = None) -> str:
        return self.sign(
            Receipt(
                iss=self.issuer,
                iat=self.now if iat is None else iat,
                order_id=order_id,
                device_id=device_id,
                payment_hash=payment_hash,
            )
        )

    def open_payment(self, order_id: str, sealed_b64: str) -> str:
        """The payment JWS a device sealed to this forger's payment key (HPKE, `payment_info(order_id)`)."""
        return hpke.open(self.payment, b64url_decode(sealed_b64), info=hpke.payment_info(order_id)).decode()

    def receipt_for_payment(
        self, device_id: str, order_id: str, sealed_b64: str, *, iat: int | None = None
    ) -> str:
        """The receipt for a sealed payment, at a chosen `iat` (the real center stamps its own)."""
        token = self.open_payment(order_id, sealed_b64)
        return self.receipt(device_id, order_id, message_hash(token), iat=iat)
