"""The center's side of flows 3 and 6, played with `protocol` only (the real center is not built yet)."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ec

from protocol import jws
from protocol.b64 import b64url_encode
from protocol.keys import jwk_from_public_key, root_fingerprint
from protocol.messages import Credit, Enrollment, Jwk, Keyset
from protocol.money import Money

T0 = 1_800_000_000
DAY = 86400


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@dataclass
class PlayCenter:
    """A root, a root-signed key set, and the signing key that signs enrollments and credits."""

    root: ec.EllipticCurvePrivateKey = field(default_factory=_key)
    signing: ec.EllipticCurvePrivateKey = field(default_factory=_key)
    payment: ec.EllipticCurvePrivateKey = field(default_factory=_key)
    keyset_signer: ec.EllipticCurvePrivateKey | None = None  # sign the key set with another key (forgery)
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
            jws.SoftwareSigner(self.keyset_signer or self.root),
        )

    @property
    def root_jwk(self) -> dict[str, str]:
        return jwk_from_public_key(self.root.public_key())

    @property
    def fingerprint(self) -> str:
        return root_fingerprint(self.root.public_key())

    def enrollment(self, device_id: str, token: bytes = b"device-token") -> str:
        return jws.sign(
            Enrollment(
                iss="center",
                iat=self.now,
                device_id=device_id,
                keyset=self.keyset,
                device_token_hash=b64url_encode(hashlib.sha256(token).digest()),
            ),
            jws.SoftwareSigner(self.signing),
        )

    def enrollment_request(self, device_id: str) -> dict[str, object]:
        return {"enrollment": self.enrollment(device_id), "root_jwk": self.root_jwk}

    def credit(
        self,
        device_id: str,
        amount: int = 1000,
        *,
        kind: str = "prepaid",
        credit_id: str | None = None,
        iat: int | None = None,
        exp: int | None = None,
        signer: ec.EllipticCurvePrivateKey | None = None,
    ) -> str:
        iat = self.now if iat is None else iat
        return jws.sign(
            Credit(
                iss="center",
                iat=iat,
                credit_id=credit_id or f"cr{next(self._ids)}",
                device_id=device_id,
                kind=kind,
                amount=Money(amount=amount, currency="JPY"),
                item_id=None,
                exp=iat + 300 * DAY if exp is None else exp,
            ),
            jws.SoftwareSigner(signer or self.signing),
        )
