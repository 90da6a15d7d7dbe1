"""Shared pieces of the benchmarks: latency statistics and the center's side played with `protocol`."""

from __future__ import annotations

import hashlib
import statistics
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from protocol import hpke, jws, stream
from protocol.b64 import b64url_encode
from protocol.keys import jwk_from_public_key
from protocol.messages import Credit, Enrollment, Jwk, Keyset, Order
from protocol.money import Money

T0 = 1_800_000_000
DAY = 86400


def latency_ms(samples: list[float], *, tail: int = 99, digits: int = 3) -> dict[str, float]:
    """Median, the `tail` percentile and the maximum of samples in seconds, as milliseconds."""
    ordered = sorted(samples)
    high = ordered[min(len(ordered) - 1, int(tail / 100 * len(ordered)))]
    return {
        "median": round(statistics.median(ordered) * 1000, digits),
        f"p{tail}": round(high * 1000, digits),
        "max": round(ordered[-1] * 1000, digits),
    }


class BenchCenter:
    """The center's side, played with `protocol`: key set, enrollment, a credit, orders."""

    def __init__(self) -> None:
        self.last_item_id = ""  # the item of the latest order()
        self.root = ec.generate_private_key(ec.SECP256R1())
        self.signing = ec.generate_private_key(ec.SECP256R1())
        self.payment = ec.generate_private_key(ec.SECP256R1())
        self.keyset = jws.sign(
            Keyset(
                iss="center",
                iat=T0,
                version=1,
                signing_jwk=Jwk.from_public_key(self.signing.public_key()),
                payment_jwk=Jwk.from_public_key(self.payment.public_key()),
            ),
            jws.SoftwareSigner(self.root),
        )
        self._n = 0

    def sign(self, payload: Any) -> str:
        return jws.sign(payload, jws.SoftwareSigner(self.signing))

    def enrollment(self, device_id: str) -> dict[str, Any]:
        token = self.sign(
            Enrollment(
                iss="center",
                iat=T0,
                device_id=device_id,
                keyset=self.keyset,
                device_token_hash=b64url_encode(hashlib.sha256(b"bench").digest()),
            )
        )
        return {"enrollment": token, "root_jwk": jwk_from_public_key(self.root.public_key())}

    def credit(self, device_id: str, amount: int) -> str:
        self._n += 1
        return self.sign(
            Credit(
                iss="center",
                iat=T0,
                credit_id=f"bench-credit-{self._n}",
                device_id=device_id,
                kind="prepaid",
                amount=Money(amount=amount, currency="JPY"),
                exp=T0 + 300 * DAY,
            )
        )

    def order(
        self,
        device_id: str,
        kem: ec.EllipticCurvePublicKey,
        *,
        ke: bytes,
        sha256: str,
        length: int,
        aead: str,
        segment_size: int = stream.DEFAULT_SEGMENT_SIZE,
        price: int = 1,
    ) -> str:
        self._n += 1
        order_id = f"bench-order-{self._n}"
        self.last_item_id = f"bench-item-{self._n}"
        return self.sign(
            Order(
                iss="center",
                iat=T0,
                order_id=order_id,
                item_id=self.last_item_id,
                device_id=device_id,
                price=Money(amount=price, currency="JPY"),
                content_sha256=sha256,
                content_length=length,
                aead=aead,
                segment_size=segment_size,
                wrapped_key=b64url_encode(hpke.seal(kem, ke, info=hpke.content_key_info(order_id))),
                exp=T0 + DAY,
            )
        )
