"""The service behind the device API's routes: the device core plus what only the HTTP layer knows (bearer
tokens, the answers' shapes). Every route goes route -> this service (or `purchase_service` for the streamed
upload) -> the core (`Device`, the `Wallet` it hands out); no route reads core state or calls the wallet
(tests/device_api/test_layers.py). `streaming` only renders the plaintext this service opened.

Every method blocks (TPM, disk) and is called off the event loop (FastAPI runs `def` routes in its thread
pool; the gate uses `anyio.to_thread`). The core serializes state changes on its own lock and the TPM
adapter on its worker thread.
"""

from __future__ import annotations

import base64
import logging
from contextlib import AbstractContextManager
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from device_os.api.errors import ActivationFailed, Unauthorized
from device_os.api.models import (
    ActivateAnswer,
    EnrollmentAnswer,
    Health,
    Identity,
    LibraryAnswer,
    LibraryItem,
    OutboxAnswer,
    ReceiptAnswer,
    SetupAnswer,
    UnlockAnswer,
)
from device_os.api.purchase_service import order_id_of
from device_os.api.streaming import OpenContent
from device_os.api.tokens import Tokens
from device_os.core.answers import CreditAnswer, WalletView
from device_os.core.device import Device, Phase
from device_os.core.wallet import Wallet
from device_os.errors import Locked, Tampered, WrongPin
from device_os.tpm import TpmError, TpmUnavailable
from protocol.b64 import b64url_decode, b64url_encode
from protocol.errors import EncodingError
from protocol.http.ranges import parse_range
from protocol.keys import public_key_from_jwk, public_key_to_pem

log = logging.getLogger("device_os.api")


class DeviceService:
    def __init__(self, device: Device, *, software_version: str, tokens: Tokens | None = None) -> None:
        self.device = device
        self.tokens = tokens or Tokens()
        self.software_version = software_version
        self._ek_public: bytes | None = None

    # -- public routes ------------------------------------------------------------------------------------
    def health(self) -> Health:
        status = self.device.status()
        return Health(
            phase=status.phase,
            device_id=status.device_id,
            tampered=status.tampered,
            tamper_reason=status.tamper_reason,
            software_version=self.software_version,
            root_pinning=self.device.settings.root_pinning(),
        )

    def identity(self) -> Identity:
        ident: dict[str, Any] = self.device.identity()  # NotSetUp before setup (409)
        if self._ek_public is None:
            self._ek_public = self.device.ek_public()
        certificate = x509.load_der_x509_certificate(base64.b64decode(ident["ek_certificate"], validate=True))
        certify = ident["certify"]
        return Identity(
            device_id=ident["device_id"],
            software_version=self.software_version,
            aead=ident["aead"],
            ek_certificate=certificate.public_bytes(Encoding.PEM).decode("ascii"),
            ek_public=b64url_encode(self._ek_public),
            attestation_key=ident["attestation_key"],
            attestation_key_public=certify["kem"]["ak_public"],
            kem_key=public_key_to_pem(public_key_from_jwk(ident["kem_jwk"])),
            payment_key=public_key_to_pem(public_key_from_jwk(ident["payment_jwk"])),
            kem_jwk=ident["kem_jwk"],
            payment_jwk=ident["payment_jwk"],
            certify_nonce=ident["certify_nonce"],
            certify=certify,
            root_pinning=self.device.settings.root_pinning(),
            pinned_root_fingerprint=self.device.settings.pinned_root_fingerprint,
        )

    def setup(self, pin: str) -> SetupAnswer:
        status = self.device.setup(pin)
        assert status.device_id is not None
        return SetupAnswer(device_id=status.device_id, phase=status.phase)

    def unlock(self, pin: str) -> UnlockAnswer:
        """Locked: the TPM checks the PIN (its DA counter gives tries_left). Unlocked: the core checks it
        against RAM (no TPM try spent; the core counts the strikes); three wrong in a row lock the device and
        end every token."""
        self.check_idle()
        if self.device.needs_recovery:
            self._recover()
        was_unlocked = self.device.phase() is Phase.UNLOCKED
        try:
            self.device.unlock(pin)
            wallet = self.device.wallet()
        except WrongPin:
            if was_unlocked:
                self._locked_by_strikes()
            raise
        except Locked:
            self._locked()
            raise
        return UnlockAnswer(
            token=self.tokens.issue(wallet), auto_lock_seconds=self.device.settings.auto_lock_seconds
        )

    # -- token routes -------------------------------------------------------------------------------------
    def authenticate(self, token: str | None) -> Wallet:
        """The gate's check for `TOKEN` routes: a live token of the current unlock session (resets the idle
        timer). A tampered device says so before anything else (DESIGN.md: it refuses and says so)."""
        if self.device.needs_recovery:
            self._recover()
            raise Unauthorized(
                "a commit was interrupted; the device recovered its state and locked: unlock again"
            )
        if self.device.tampered:
            raise Tampered("the device state failed its integrity check; spending is refused")
        if token is None:
            raise Unauthorized("a bearer token from POST /v1/unlock is required")
        session = self.tokens.session_for(token)
        if session is None:
            raise Unauthorized("the bearer token is not valid (the device locked or restarted since)")
        try:
            wallet = self.device.wallet()
        except Locked:
            self._locked()
            raise Unauthorized("the device locked; unlock again") from None
        if wallet is not session:
            self.tokens.revoke_all()
            raise Unauthorized("the bearer token is from an earlier unlock")
        return wallet

    def lock(self) -> None:
        self.device.lock()
        self._locked()

    def change_pin(self, old_pin: str, new_pin: str) -> None:
        try:
            self.device.change_pin(old_pin, new_pin)
        except WrongPin:
            self._locked_by_strikes()
            raise

    def activate(self, credential_blob: str, encrypted_secret: str) -> ActivateAnswer:
        """Flow 3: TPM2_ActivateCredential with the attestation key and the EK; answers the secret."""
        try:
            blob, secret = b64url_decode(credential_blob), b64url_decode(encrypted_secret)
        except EncodingError as exc:
            raise ActivationFailed("credential_blob and encrypted_secret must be base64url") from exc
        try:
            recovered = self.device.activate_credential(blob, secret)  # NotProvisioned before provisioning
        except TpmUnavailable:
            raise
        except TpmError as exc:
            raise ActivationFailed("the TPM refused the credential") from exc
        return ActivateAnswer(secret=b64url_encode(recovered))

    def enroll(self, wallet: Wallet, enrollment: str, root_jwk: dict[str, str]) -> EnrollmentAnswer:
        record = wallet.accept_enrollment(enrollment, root_jwk)
        return EnrollmentAnswer(
            device_id=self.device.device_id,
            keyset_version=record.keyset_version,
            root_fingerprint=record.root_fingerprint,
            counter=wallet.view().counter,
        )

    @staticmethod
    def apply_credit(wallet: Wallet, credit: str) -> CreditAnswer:
        return wallet.apply_credit(credit)

    @staticmethod
    def wallet_view(wallet: Wallet) -> WalletView:
        return wallet.view()

    @staticmethod
    def statement(wallet: Wallet, nonce: str) -> str:
        return wallet.statement(nonce)

    @staticmethod
    def apply_receipt(wallet: Wallet, receipt: str) -> ReceiptAnswer:
        wallet.apply_receipt(receipt)
        return ReceiptAnswer(order_id=order_id_of(receipt), counter=wallet.view().counter)

    @staticmethod
    def outbox(wallet: Wallet) -> OutboxAnswer:
        return OutboxAnswer(entries=sorted(wallet.outbox(), key=lambda e: e.counter))

    @staticmethod
    def library(wallet: Wallet) -> LibraryAnswer:
        entries = sorted(wallet.library(), key=lambda e: e.item_id)
        return LibraryAnswer(
            items=[
                LibraryItem(
                    item_id=e.item_id, order_id=e.order_id, mode=e.mode, length=e.length, sha256=e.sha256
                )
                for e in entries
            ]
        )

    @staticmethod
    def open_content(wallet: Wallet, item_id: str, range_header: str | None) -> OpenContent:
        """An owned item's plaintext for the content route (`streaming` renders it): the whole item, or the
        one byte range `range_header` selects (NotFound for an item not owned, RangeNotSatisfiable: 416).
        Nothing is decrypted yet; a deferred item's first open runs at the first read."""
        entry = wallet.entry(item_id)
        span = parse_range(range_header, entry.length)
        if span is None:
            return OpenContent(entry=entry, span=None, chunks=wallet.open_item(item_id))
        start, end = span
        return OpenContent(entry=entry, span=span, chunks=wallet.read_range(item_id, start, end - start))

    @staticmethod
    def delete_item(wallet: Wallet, item_id: str) -> None:
        wallet.delete_item(item_id)

    # -- auto-lock ----------------------------------------------------------------------------------------
    def busy(self) -> AbstractContextManager[None]:
        """Held by the gate around every authenticated request: no auto-lock while one is in progress."""
        return self.device.busy()

    def check_idle(self) -> bool:
        """Lock when idle past the timeout (called periodically and before unlock); True if it locked."""
        if self.device.check_idle():
            self._locked()
            return True
        return False

    def shutdown(self) -> None:
        """Service stop: every token dies with the process; the caller closes the device (TPM shutdown)."""
        self._locked()

    # -- helpers ------------------------------------------------------------------------------------------
    def _recover(self) -> None:
        """After an interrupted commit (DESIGN.md "Device state and crash safety"): lock, then run the
        start-up recovery by headers, as after a power cut, without restarting the service. The interrupted
        commit is rolled forward or discarded; committed operations stay a prefix of the attempted ones."""
        log.warning("recovering from an interrupted commit")
        self.device.start()
        self._locked()

    def _locked(self) -> None:
        self.tokens.revoke_all()

    def _locked_by_strikes(self) -> None:
        """After a wrong PIN while unlocked: if the core locked (the third in a row), every token ends."""
        if self.device.phase() is not Phase.UNLOCKED:
            log.warning("three wrong PINs in a row: the device locked; every token revoked")
            self._locked()
