"""The real center's service layer in this process, for tests and benchmarks that drive the device core
(`device_os.core.device.Device`) directly, without HTTP: the same services the center's routes call —
enrollment (MakeCredential against swtpm's EK CA, then the signed enrollment), credits (issue a code, redeem
it), orders (hold, Ke, the signed order) and delivery (the content stream) — over a real SQLite database in a
data directory of their own. Every message is the real center's; nothing is signed by hand here.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from center.blobs import LocalBlobStore
from center.db.engine import make_engine, session_factory, upgrade
from center.keys import load_or_create
from center.services.catalog import CatalogService, NewItem, parse_price
from center.services.common import Commerce
from center.services.credits import CreditService, NewCredit
from center.services.delivery import Delivery
from center.services.enrollment import EnrollmentService, load_ek_trust
from center.services.orders import OrderService
from center.services.settlement import SettlementService
from center.settings import CenterSettings
from device_os.api.service import DeviceService
from device_os.core.device import Device
from protocol.b64 import b64url_decode, b64url_encode
from protocol.center_api import ActivateRequest, DeviceIdentity, OrderRequest, RedeemRequest

__all__ = ["CenterServices", "Enrolled"]


@dataclass
class Enrolled:
    """A device as the center knows it after enrollment."""

    device_id: str
    token: str  # the device's bearer token at the center (its hash is in the enrollment)
    enrollment: str
    root_jwk: dict[str, str]
    welcome_credit: str | None


@dataclass
class CenterServices:
    """`Commerce` and the services over `data` (keys created on first use), trusting `ek_ca`."""

    data: Path
    ek_ca: Path
    welcome_credit: int = 0
    max_unpaid: int = 1000
    commerce: Commerce = field(init=False)

    def __post_init__(self) -> None:
        settings = CenterSettings(
            data_dir=self.data,
            ek_ca=(self.ek_ca,),
            welcome_credit=self.welcome_credit,
            max_unpaid=self.max_unpaid,
        )
        settings.prepare_data_dir()
        self._engine = make_engine(settings.sqlalchemy_url())
        try:
            upgrade(self._engine)
            keys = load_or_create(settings.keys_dir, settings.issuer_url())
        except BaseException:
            self._engine.dispose()
            raise
        self.commerce = Commerce(
            session_factory(self._engine), keys, settings, LocalBlobStore(settings.blobs_dir)
        )
        self._trust = load_ek_trust([self.ek_ca])

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> CenterServices:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def root_fingerprint(self) -> str:
        fingerprint: str = self.commerce.keys.root_fingerprint
        return fingerprint

    # -- flow 3 ---------------------------------------------------------------------------------------------
    def enroll(self, device: Device) -> Enrolled:
        """Attest `device` (set up) as the routes would; its wallet accepts the enrollment."""
        published = DeviceService(device, software_version="test").identity()  # what GET /v1/identity answers

        def activate(blob: bytes, secret: bytes) -> bytes:
            return device.activate_credential(blob, secret)

        enrolled = self.attest(published.model_dump(mode="json"), activate)
        device.wallet().accept_enrollment(enrolled.enrollment, enrolled.root_jwk)
        return enrolled

    def attest(self, identity: dict[str, Any], activate: Callable[[bytes, bytes], bytes]) -> Enrolled:
        """Flow 3 at the center for a device reached some other way: its published identity, and a function
        running its TPM2_ActivateCredential. The enrollment is not given to the device."""
        enrollment = EnrollmentService(self.commerce, self._trust)
        device_identity = DeviceIdentity.model_validate(identity)
        challenge = enrollment.challenge(device_identity)
        secret = activate(b64url_decode(challenge.credential_blob), b64url_decode(challenge.encrypted_secret))
        answer = enrollment.activate(
            device_identity.device_id,
            ActivateRequest(challenge_id=challenge.challenge_id, secret=b64url_encode(secret)),
        )
        root_jwk = answer.root_jwk.model_dump()
        return Enrolled(
            answer.device_id, answer.device_token, answer.enrollment, root_jwk, answer.welcome_credit
        )

    # -- flow 6 ---------------------------------------------------------------------------------------------
    def credit(
        self, device_id: str, amount: int | None = 1000, *, kind: str = "prepaid", item_id: str | None = None
    ) -> str:
        """A credit as a user gets it: a code the seller issued, redeemed; the signed credit."""
        credits = CreditService(self.commerce)
        if kind == "ticket":
            new = NewCredit(device_id, "ticket", item_id=item_id)
        else:
            new = NewCredit(device_id, kind, amount, "JPY")
        code, _ = credits.issue(new)
        credit: str = credits.redeem(RedeemRequest(code=code, device_id=device_id), device_id).credit
        return credit

    # -- catalog and flow 5 ---------------------------------------------------------------------------------
    def add_item(self, content: bytes, *, title: str = "Item", price: int = 100) -> str:
        """Register `content` (with a short text as the seller's trial preview: test content is random)."""
        work = self.data / "tmp"
        work.mkdir(parents=True, exist_ok=True)
        path, trial = work / f"item-{secrets.token_hex(8)}.bin", work / f"trial-{secrets.token_hex(8)}.txt"
        path.write_bytes(content)
        trial.write_text(f"A trial of {title}.\n")
        try:
            catalog = CatalogService(self.commerce.sessions, self.commerce.blobs, work)
            item = catalog.add_item(NewItem([path], title, parse_price(price, "JPY"), "", trial))
        finally:
            path.unlink()
            trial.unlink()
        item_id: str = item.item_id
        return item_id

    def order(self, device_id: str, item_id: str) -> tuple[str, bytes]:
        """A fresh order for `item_id` and its whole content stream (what GET .../content serves)."""
        orders = OrderService(self.commerce)
        answer, _ = orders.create(
            OrderRequest(item_id=item_id, device_id=device_id), device_id, secrets.token_urlsafe(16)
        )
        return answer.order, b"".join(self.stream(answer.order_id, device_id))

    def stream(self, order_id: str, device_id: str) -> Iterator[bytes]:
        row = OrderService(self.commerce).for_delivery(order_id, device_id)
        delivery = Delivery.of(row, self.commerce.keys.data_key)
        return delivery.chunks(self.commerce.blobs, 0, delivery.length)

    def open_payment(self, order_id: str, sealed_b64: str) -> str:
        """A device's sealed payment opened with the center's payment key (what settlement reads): its JWS."""
        from protocol import hpke

        sealed = b64url_decode(sealed_b64)
        return hpke.open(self.commerce.keys.payment, sealed, info=hpke.payment_info(order_id)).decode()

    def pay(self, order_id: str, payment: str, device_id: str) -> str:
        """Settle a sealed payment (the device's outbox entry): the center's receipt."""
        settlement = SettlementService(self.commerce)
        answer = settlement.pay(order_id, payment, device_id)
        receipt: str = answer.receipt
        return receipt
