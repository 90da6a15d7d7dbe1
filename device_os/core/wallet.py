"""Wallet operations on an unlocked device (DESIGN.md flows 3, 5.3-5.5, 6, 7; "Pricing"; "Time floor").

Every mutating operation verifies its center-signed message against the enrolled key set, raises the time
floor to the message's `iat` before judging `exp`, re-checks everything under the commit lock, and ends in
exactly one commit (or none, when refused: then the TPM counter, `state` and the content directory are
unchanged).

The purchase hot path issues three TPM commands: ECDH_ZGen (unwrap Ke), Sign (the payment), NV_Increment (the
commit), and the store reads the counter back after the increment (NV_Read; docs/device-state.md). The signed
payment is written inside `state.next` before the increment and returned only after it.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, TypeVar

from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ConfigDict

from device_os.core import statedoc
from device_os.core.aead import AeadName
from device_os.core.body import EnrollmentRecord, LibraryEntry, OutboxEntry, SettledEntry, StateBody
from device_os.core.content import MAX_SEGMENT_SIZE, ContentStore, PendingBlob, import_stream
from device_os.core.store import StateStore
from device_os.errors import (
    AlreadyEnrolled,
    AlreadyOwned,
    Conflict,
    ContentMismatch,
    CorruptContent,
    CreditAlreadyApplied,
    InsufficientFunds,
    InvalidMessage,
    InvalidReceipt,
    Locked,
    MessageExpired,
    NotEnrolled,
    NotFound,
    OrderSettled,
    Tampered,
    Unavailable,
    UnknownOrder,
    UntrustedKeyset,
    WrongDevice,
)
from device_os.tpm import KeyNotLoaded, TpmError
from protocol import hpke, jws, pricing, stream
from protocol.b64 import b64url_decode, b64url_encode
from protocol.errors import EncodingError, HpkeError, JwsError, JwsExpired, JwsWrongAudience, StreamError
from protocol.errors import InsufficientFunds as PricingShortfall
from protocol.hpke import RecipientKey
from protocol.jws import Signer
from protocol.keys import public_key_from_jwk, root_fingerprint
from protocol.messages import (
    Credit,
    Enrollment,
    Keyset,
    Order,
    Payment,
    Receipt,
    SignedPayload,
    Statement,
    message_hash,
)
from protocol.money import MAX_AMOUNT

P = TypeVar("P", bound=SignedPayload)
CONTENT_KEY_SIZE = 32  # Ke (DESIGN.md "Keys"): content stream v1 takes exactly a 256-bit key
PurchaseMode = Literal["now", "deferred"]


class PurchaseAnswer(BaseModel):
    """The device's answer to a purchase: the same bytes every time the same order is posted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    order_id: str
    payment: str  # base64url of the HPKE-sealed payment JWS
    counter: int


class CreditAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    credit_id: str
    kind: str
    counter: int


class WalletView(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    device_id: str
    counter: int
    time_floor: int
    purses: pricing.Purses
    outbox: tuple[str, ...]
    enrolled: bool


@dataclass
class StagedContent:
    """A blob written by the content store for one order, not yet referenced by any commit. `pending`: its
    fsync/rename still running in the background (`wait_durable()` before the commit point)."""

    order_id: str
    blob: str
    mode: PurchaseMode
    sha256: str
    length: int
    pending: PendingBlob | None = None
    ahead: SignedAhead | None = None

    def signed_for(self, payment: Payment) -> str | None:
        """The payment JWS signed while the content streamed in, if it is exactly `payment`."""
        return self.ahead.result_for(payment) if self.ahead is not None else None

    def wait_durable(self) -> None:
        """Return once the blob is durable; raise (the blob is gone then) if it could not be made so."""
        if self.pending is not None:
            self.pending.wait()

    def settle(self) -> None:
        """Wait for the background work to end, whatever its outcome (before deleting the blob)."""
        if self.pending is not None:
            self.pending.settle()


class SignedAhead:
    """A payment signed in the TPM (TPM2_Sign) in a background thread while the content streams in, so the
    Sign overlaps the import instead of following it. The commit builds its payment under the commit lock as
    always and uses this signature only if that payment is identical (same counter, debits, floor: no commit
    came in between); otherwise the commit signs anew. It leaves the device only if that commit happens."""

    def __init__(self, payment: Payment, signer: Signer) -> None:
        self.payment = payment
        self._jws: str | None = None
        self._thread = threading.Thread(target=self._run, args=(signer,), name="payment-sign", daemon=True)
        self._thread.start()

    def _run(self, signer: Signer) -> None:
        try:
            self._jws = jws.sign(self.payment, signer)
        except Exception:  # a guess, not a check: the commit signs again and reports its own error
            self._jws = None

    def result_for(self, payment: Payment) -> str | None:
        if payment != self.payment:
            return None
        self._thread.join()
        return self._jws


@dataclass
class Session:
    """What an unlocked device holds in RAM (and nothing of it on disk in clear)."""

    device_id: str
    aead: AeadName
    dek: bytes
    payer: Signer
    kem: RecipientKey
    store: StateStore
    content: ContentStore


class Wallet:
    """The wallet service the HTTP layer calls (through `Device.wallet()`)."""

    def __init__(
        self,
        session: Session,
        body: StateBody,
        *,
        pinned_root: str | None = None,
        trust_first_center: bool = False,
    ) -> None:
        self._s = session
        self._body = body
        self._pinned_root = pinned_root
        self._trust_first_center = trust_first_center
        self.lock: threading.RLock = session.store.lock
        self._signing_key: ec.EllipticCurvePublicKey | None = None
        self._payment_key: ec.EllipticCurvePublicKey | None = None
        self._closed = False

    # -- reading ------------------------------------------------------------------------------------------
    @property
    def body(self) -> StateBody:
        return self._body

    def view(self) -> WalletView:
        body = self._body
        return WalletView(
            device_id=self._s.device_id,
            counter=self._s.store.counter,
            time_floor=body.time_floor,
            purses=body.purses,
            outbox=tuple(body.outbox),
            enrolled=body.enrollment is not None,
        )

    def outbox(self) -> list[OutboxEntry]:
        return list(self._body.outbox.values())

    def library(self) -> list[LibraryEntry]:
        return list(self._body.library.values())

    # -- helpers ------------------------------------------------------------------------------------------
    def _commit(
        self, build_body: Callable[[int], StateBody], before_increment: Callable[[], object] | None = None
    ) -> int:
        """One commit: `build_body(new_counter)` (under the lock) returns the new body or raises;
        `before_increment` as in `StateStore.commit`."""
        new_body: list[StateBody] = []

        def build(counter: int) -> bytes:
            body = build_body(counter)
            new_body.append(body)
            return statedoc.build(
                counter, body.encode(), dek=self._s.dek, device_id=self._s.device_id, aead=self._s.aead
            )

        def guarded(counter: int) -> bytes:
            if self._closed:
                raise Locked("the device was locked")
            with _tpm_calls():
                return build(counter)

        counter = self._s.store.commit(guarded, before_increment=before_increment)
        self._body = new_body[0]
        return counter

    def close(self) -> None:
        """Called by `Device.lock()`: no operation of this wallet commits any more."""
        with self.lock:
            self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise Locked("the device is locked")

    def _dek(self) -> bytes:
        """The DEK, or Locked once the device locked (lock closes the wallet, then drops the DEK)."""
        dek = self._s.dek
        if self._closed or not dek:
            raise Locked("the device is locked")
        return dek

    @property
    def closed(self) -> bool:
        """The device locked since this wallet was handed out: nothing of it commits or decrypts any more."""
        return self._closed

    def _center_keys(self) -> tuple[ec.EllipticCurvePublicKey, ec.EllipticCurvePublicKey]:
        record = self._body.enrollment
        if record is None:
            raise NotEnrolled("the device is not enrolled with a center")
        if self._signing_key is None or self._payment_key is None:
            keyset = jws.verify(record.keyset, Keyset, keys=public_key_from_jwk(record.root_jwk), now=0)
            self._signing_key = keyset.signing_jwk.public_key()
            self._payment_key = keyset.payment_jwk.public_key()
        return self._signing_key, self._payment_key

    def _judge(self, token: str, kind: type[P], key: ec.EllipticCurvePublicKey) -> tuple[P, int]:
        """Verify a center message; returns it and the floor raised to its iat (exp judged against that)."""
        floor = self._body.time_floor
        try:
            payload = jws.verify(token, kind, keys=key, now=floor, audience=self._s.device_id)
        except JwsExpired as exc:
            raise MessageExpired(f"{kind.TYP} expired") from exc
        except JwsWrongAudience as exc:
            raise WrongDevice(f"{kind.TYP} is addressed to another device") from exc
        except JwsError as exc:
            raise InvalidMessage(f"{kind.TYP}: {exc}") from exc
        floor = max(floor, payload.iat)
        expiry = payload.expiry()
        if expiry is not None and not floor < expiry:
            raise MessageExpired(f"{kind.TYP} expired")
        return payload, floor

    @staticmethod
    def _live(purses: pricing.Purses, floor: int) -> pricing.Purses:
        """Coupons and tickets still valid at the time floor (expired ones are dropped at the next commit)."""
        return pricing.Purses(
            prepaid=purses.prepaid,
            coupons=tuple(c for c in purses.coupons if c.exp > floor),
            tickets=tuple(t for t in purses.tickets if t.exp > floor),
        )

    @staticmethod
    def _spent(spent: dict[str, int], floor: int) -> dict[str, int]:
        """Spent credit ids still needed: a credit whose exp is not after the floor can never verify again."""
        return {cid: exp for cid, exp in spent.items() if exp > floor}

    @staticmethod
    def _settled(settled: dict[str, SettledEntry], floor: int) -> dict[str, SettledEntry]:
        """Settled orders still needed to answer `order-settled`: an order whose exp is not after the floor
        can never verify again (it is refused as expired), so its entry goes, as spent credit ids do."""
        return {oid: entry for oid, entry in settled.items() if entry.order_exp > floor}

    # -- enrollment ---------------------------------------------------------------------------------------
    def accept_enrollment(self, enrollment_jws: str, root_jwk: dict[str, str]) -> EnrollmentRecord:
        """Accept a `coffer-enrollment` whose key set is signed by the pinned root: the configured one, else
        the root of the enrollment accepted before, else (only with `trust_first_center`) this one's.

        The same enrollment again (either ES256 signature form, or its payload signed again) is answered
        without a commit; a different one is accepted only if strictly newer (iat, and no older key set)."""
        try:
            root_key = public_key_from_jwk(root_jwk)
        except EncodingError as exc:
            raise UntrustedKeyset("the root key is not a P-256 JWK") from exc
        fingerprint = root_fingerprint(root_key)
        with self.lock:
            current = self._body.enrollment
            pinned = self._pinned_root or (current.root_fingerprint if current else None)
            if pinned is None and not self._trust_first_center:
                raise UntrustedKeyset(
                    "no center root is pinned (COFFER_DEVICE_PINNED_ROOT_FINGERPRINT) and trust on first use "
                    "is off (COFFER_DEVICE_TRUST_FIRST_CENTER)"
                )
            if pinned is not None and not hmac.compare_digest(pinned, fingerprint):
                raise UntrustedKeyset("the key set's root is not the pinned root")
            keyset_jws = _unverified_member(enrollment_jws, "keyset")
            try:
                keyset = jws.verify(keyset_jws, Keyset, keys=root_key, now=self._body.time_floor)
            except JwsError as exc:
                raise UntrustedKeyset("the key set is not signed by the pinned root") from exc
            enrollment, floor = self._judge(enrollment_jws, Enrollment, keyset.signing_jwk.public_key())
            if enrollment.keyset != keyset_jws:  # pragma: no cover - the member was read from this token
                raise InvalidMessage("enrollment key set mismatch")
            if current is not None:
                if _same_message(current.enrollment, enrollment_jws):
                    return current  # a repeat (either signature form): answered without a commit
                if keyset.version < current.keyset_version:
                    raise AlreadyEnrolled("enrolled with a newer key set")
                if enrollment.iat <= _enrollment_iat(current):
                    raise AlreadyEnrolled("enrolled with an enrollment at least as new")
            record = EnrollmentRecord(
                enrollment=enrollment_jws,
                keyset=keyset_jws,
                keyset_version=keyset.version,
                root_fingerprint=fingerprint,
                root_jwk=dict(root_jwk),
                device_token_hash=enrollment.device_token_hash,
            )
            floor = max(floor, keyset.iat)
            self._commit(lambda _c: self._body.model_copy(update={"enrollment": record, "time_floor": floor}))
            self._signing_key = self._payment_key = None
            return record

    # -- credits ------------------------------------------------------------------------------------------
    def apply_credit(self, credit_jws: str) -> CreditAnswer:
        """Apply a verified `coffer-credit` once (its credit_id is remembered until it expires)."""
        with self.lock:
            signing_key, _ = self._center_keys()
            credit, floor = self._judge(credit_jws, Credit, signing_key)
            body = self._body
            if credit.credit_id in body.spent_credits:
                raise CreditAlreadyApplied(f"credit {credit.credit_id} was already applied")
            purses = body.purses
            if credit.kind == "prepaid":
                assert credit.amount is not None
                prepaid = dict(purses.prepaid)
                total = prepaid.get(credit.amount.currency, 0) + credit.amount.amount
                if total > MAX_AMOUNT:
                    raise Conflict("the prepaid balance would overflow")
                prepaid[credit.amount.currency] = total
                purses = purses.model_copy(update={"prepaid": prepaid})
            elif credit.kind == "coupon":
                assert credit.amount is not None
                coupon = pricing.Coupon(credit_id=credit.credit_id, amount=credit.amount, exp=credit.exp)
                purses = purses.model_copy(update={"coupons": (*purses.coupons, coupon)})
            else:
                assert credit.item_id is not None
                ticket = pricing.Ticket(credit_id=credit.credit_id, item_id=credit.item_id, exp=credit.exp)
                purses = purses.model_copy(update={"tickets": (*purses.tickets, ticket)})
            spent = self._spent({**body.spent_credits, credit.credit_id: credit.exp}, floor)
            purses = self._live(purses, floor)
            counter = self._commit(
                lambda _c: body.model_copy(
                    update={
                        "purses": purses,
                        "spent_credits": spent,
                        "settled": self._settled(body.settled, floor),
                        "time_floor": floor,
                    }
                )
            )
            return CreditAnswer(credit_id=credit.credit_id, kind=credit.kind, counter=counter)

    # -- purchases ----------------------------------------------------------------------------------------
    def stored_answer(self, order_id: str) -> PurchaseAnswer | None:
        """The committed answer for `order_id` (checked before anything else); OrderSettled once receipted."""
        body = self._body
        entry = body.outbox.get(order_id)
        if entry is not None:
            return PurchaseAnswer(order_id=order_id, payment=entry.payment, counter=entry.counter)
        if order_id in body.settled:
            raise OrderSettled(f"order {order_id} is settled")
        return None

    def verify_order(self, order_jws: str, *, repurchase: bool = False) -> Order:
        """Check an order before its content is read: key set, device, expiry, ownership, funds."""
        signing_key, _ = self._center_keys()
        order, floor = self._judge(order_jws, Order, signing_key)
        if order.item_id in self._body.library and not repurchase:
            raise AlreadyOwned(f"item {order.item_id} is already in the library")
        if order.segment_size > MAX_SEGMENT_SIZE:
            raise CorruptContent("the order's segment size exceeds the device's limit")
        try:
            pricing.debits(order.price, self._live(self._body.purses, floor), order.item_id)
        except PricingShortfall as exc:
            raise InsufficientFunds(str(exc)) from exc
        return order

    def _unwrap(self, order: Order) -> bytes:
        self._check_open()
        try:
            with _tpm_calls():
                ke = hpke.open(
                    self._s.kem, b64url_decode(order.wrapped_key), info=hpke.content_key_info(order.order_id)
                )
        except (HpkeError, EncodingError) as exc:
            raise InvalidMessage("the order's wrapped key does not open with this device's KEM key") from exc
        if len(ke) != CONTENT_KEY_SIZE:
            raise InvalidMessage("the order's wrapped key is not a 32-byte content key")
        return ke

    def stage(
        self,
        order: Order,
        chunks: Iterable[bytes],
        mode: PurchaseMode = "now",
        *,
        order_jws: str | None = None,
    ) -> StagedContent:
        """Read the center's stream for `order` into the content store (before the commit that references it).

        `now`: decrypt with Ke while re-encrypting under the DEK. `deferred`: decrypt only to check the hash,
        keep the center's stream as received. Either way SHA-256 and length are checked against the order, and
        a refused stream leaves no file behind. The content work is `content.import_stream` (the plaintext is
        hashed once, by the writer in `now` mode). With `order_jws`, the payment the commit will most likely
        make is signed in the TPM meanwhile (`SignedAhead`).
        """
        ke = self._unwrap(order)
        ahead = self._sign_ahead(order, order_jws) if order_jws is not None else None
        content = self._s.content
        writer = content.writer(self._dek(), self._s.aead) if mode == "now" else content.raw_writer()
        try:
            sha256, length = import_stream(chunks, ke, writer, max_length=order.content_length)
        except StreamError as exc:
            writer.abort()
            raise CorruptContent(f"content stream: {type(exc).__name__}") from exc
        except BaseException:
            writer.abort()
            raise
        if length != order.content_length or not hmac.compare_digest(sha256, order.content_sha256):
            writer.abort()
            raise ContentMismatch("content does not match the order's hash or length")
        pending = writer.finish_in_background()  # overlaps the commit's preparation; waited for before it
        return StagedContent(order.order_id, pending.blob_id, mode, sha256, length, pending, ahead)

    def _payment(
        self, order: Order, order_hash: str, floor: int, counter: int, lines: tuple[pricing.Debit, ...]
    ) -> Payment:
        return Payment(
            iss=self._s.device_id,
            iat=floor,
            order_id=order.order_id,
            order_hash=order_hash,
            device_id=self._s.device_id,
            counter=counter,
            debits=lines,
        )

    def _sign_ahead(self, order: Order, order_jws: str) -> SignedAhead | None:
        """The payment `commit_purchase` would build if it ran now, signed in the background. Read without
        the commit lock (a commit may be waiting for its blob under it): a stale guess costs a second Sign."""
        if self._closed:
            return None
        try:
            body, counter = self._body, self._s.store.counter
        except (Unavailable, Tampered):
            return None  # the commit reports it
        floor = max(body.time_floor, order.iat)
        try:
            lines = pricing.debits(order.price, self._live(body.purses, floor), order.item_id)
        except PricingShortfall:
            return None  # the commit refuses it
        payment = self._payment(order, message_hash(order_jws), floor, counter + 1, lines)
        return SignedAhead(payment, self._s.payer)

    def commit_purchase(
        self, order_jws: str, staged: StagedContent, *, repurchase: bool = False
    ) -> PurchaseAnswer:
        """Debit, sign and seal the payment, add outbox and library entries, raise the floor: one commit.

        The same order again returns the stored answer (and drops the new blob). A refusal drops the blob.
        """
        content = self._s.content
        try:
            with self.lock:
                answer = self.stored_answer(_unverified_member(order_jws, "order_id"))
                if answer is not None:
                    staged.settle()
                    content.delete(staged.blob)
                    return answer
                signing_key, payment_key = self._center_keys()
                order, floor = self._judge(order_jws, Order, signing_key)
                if (
                    staged.order_id != order.order_id
                    or staged.length != order.content_length
                    or not (hmac.compare_digest(staged.sha256, order.content_sha256))
                ):
                    raise ContentMismatch("staged content is not this order's")
                body = self._body
                old = body.library.get(order.item_id)
                if old is not None and not repurchase:
                    raise AlreadyOwned(f"item {order.item_id} is already in the library")
                live = self._live(body.purses, floor)
                try:
                    lines = pricing.debits(order.price, live, order.item_id)
                    purses = pricing.apply(live, order.price, lines)
                except PricingShortfall as exc:
                    raise InsufficientFunds(str(exc)) from exc
                order_hash = message_hash(order_jws)
                entry = LibraryEntry(
                    item_id=order.item_id,
                    order_id=order.order_id,
                    blob=staged.blob,
                    mode=staged.mode,
                    length=staged.length,
                    sha256=staged.sha256,
                    wrapped_key=order.wrapped_key if staged.mode == "deferred" else None,
                    center_aead=order.aead if staged.mode == "deferred" else None,
                    center_segment_size=order.segment_size if staged.mode == "deferred" else None,
                )

                def build(counter: int) -> StateBody:
                    payment = self._payment(order, order_hash, floor, counter, lines)
                    payment_jws = staged.signed_for(payment) or jws.sign(payment, self._s.payer)
                    sealed = hpke.seal(
                        payment_key, payment_jws.encode("ascii"), info=hpke.payment_info(order.order_id)
                    )
                    out = OutboxEntry(
                        order_id=order.order_id,
                        item_id=order.item_id,
                        order_hash=order_hash,
                        counter=counter,
                        price=order.price,
                        debits=lines,
                        payment=b64url_encode(sealed),
                        payment_hash=message_hash(payment_jws),
                        order_exp=order.exp,
                    )
                    return body.model_copy(
                        update={
                            "purses": purses,
                            "spent_credits": self._spent(body.spent_credits, floor),
                            "settled": self._settled(body.settled, floor),
                            "outbox": {**body.outbox, order.order_id: out},
                            "library": {**body.library, order.item_id: entry},
                            "time_floor": floor,
                        }
                    )

                self._commit(build, before_increment=staged.wait_durable)
                committed = self._body.outbox[order.order_id]
        except (Unavailable, Tampered):
            staged.settle()
            raise  # the commit may have happened: the blob stays; the first unlock collects it if orphaned
        except BaseException:
            staged.settle()
            if staged.blob not in {e.blob for e in self._body.library.values()}:
                content.delete(staged.blob)
            raise
        if old is not None and old.blob != staged.blob:
            content.delete(old.blob)
        return PurchaseAnswer(
            order_id=committed.order_id, payment=committed.payment, counter=committed.counter
        )

    def purchase(
        self, order_jws: str, chunks: Iterable[bytes], *, mode: PurchaseMode = "now", repurchase: bool = False
    ) -> PurchaseAnswer:
        """Flow 5.3 in one call: stored answer, verify, stage the content, commit."""
        answer = self.stored_answer(_unverified_member(order_jws, "order_id"))
        if answer is not None:
            return answer
        order = self.verify_order(order_jws, repurchase=repurchase)
        staged = self.stage(order, chunks, mode, order_jws=order_jws)
        return self.commit_purchase(order_jws, staged, repurchase=repurchase)

    # -- receipts and statements --------------------------------------------------------------------------
    def apply_receipt(self, receipt_jws: str) -> None:
        """Clear the outbox entry a `coffer-receipt` names (idempotent once settled)."""
        with self.lock:
            signing_key, _ = self._center_keys()
            receipt, floor = self._judge(receipt_jws, Receipt, signing_key)
            body = self._body
            entry = body.outbox.get(receipt.order_id)
            if entry is None:
                settled = body.settled.get(receipt.order_id)
                if settled is not None and hmac.compare_digest(settled.payment_hash, receipt.payment_hash):
                    return
                raise UnknownOrder(f"no payment for order {receipt.order_id} in the outbox")
            if not hmac.compare_digest(entry.payment_hash, receipt.payment_hash):
                raise InvalidReceipt("the receipt names another payment")
            outbox = {k: v for k, v in body.outbox.items() if k != receipt.order_id}
            done = SettledEntry(
                order_id=entry.order_id,
                item_id=entry.item_id,
                counter=entry.counter,
                price=entry.price,
                debits=entry.debits,
                payment_hash=entry.payment_hash,
                order_exp=entry.order_exp,
            )
            self._commit(
                lambda _c: body.model_copy(
                    update={
                        "outbox": outbox,
                        "settled": self._settled({**body.settled, entry.order_id: done}, floor),
                        "spent_credits": self._spent(body.spent_credits, floor),
                        "time_floor": floor,
                    }
                )
            )

    def statement(self, nonce: str) -> str:
        """A `coffer-statement` signed by the payment key in the TPM (no commit)."""
        with self.lock:
            body = self._body
            payload = Statement(
                iss=self._s.device_id,
                iat=body.time_floor,
                device_id=self._s.device_id,
                counter=self._s.store.counter,
                purses=body.purses,
                outbox=tuple(sorted(body.outbox)),
                nonce=nonce,
            )
            self._check_open()
            with _tpm_calls():
                return jws.sign(payload, self._s.payer)

    # -- library ------------------------------------------------------------------------------------------
    def _entry(self, item_id: str) -> LibraryEntry:
        entry = self._body.library.get(item_id)
        if entry is None:
            raise NotFound(f"item {item_id} is not in the library")
        return entry

    def _check_blob(self, entry: LibraryEntry) -> None:
        """The blob exists and its length is the library's (a lost or swapped file is corrupt content)."""
        try:
            length = self._s.content.plaintext_length(entry.blob)
        except (OSError, StreamError, ValueError) as exc:
            raise CorruptContent(f"stored content of {entry.item_id} is missing or unreadable") from exc
        if length != entry.length:
            raise CorruptContent(f"stored content of {entry.item_id} is not the library's length")

    def open_item(self, item_id: str) -> Iterator[bytes]:
        """The plaintext of an owned item; a deferred item is re-encrypted under the DEK first."""
        entry = self._entry(item_id)
        if entry.mode == "deferred":
            entry = self._materialize(entry)
        self._check_blob(entry)
        try:
            yield from self._s.content.read(entry.blob, self._dek(), alive=self._check_open)
        except (StreamError, OSError) as exc:
            raise CorruptContent(f"stored content of {item_id}: {type(exc).__name__}") from exc

    def read_range(self, item_id: str, start: int, length: int) -> Iterator[bytes]:
        entry = self._entry(item_id)
        if entry.mode == "deferred":
            entry = self._materialize(entry)
        self._check_blob(entry)
        try:
            yield from self._s.content.read_range(
                entry.blob, self._dek(), start, length, alive=self._check_open
            )
        except (StreamError, OSError, ValueError) as exc:
            raise CorruptContent(f"stored content of {item_id}: {type(exc).__name__}") from exc

    def _materialize(self, entry: LibraryEntry) -> LibraryEntry:
        """Procedure 2's first open: unwrap Ke again, re-encrypt under the DEK, swap blobs in one commit.

        The re-encryption runs outside the commit lock (a large item takes long; lock and auto-lock must not
        wait for it) and stops at the next chunk once the device locks; the commit then takes the lock
        briefly and checks again that the item is still this deferred one (a concurrent first open may
        have committed: its result is used and this blob deleted)."""
        with self.lock:
            current = self._entry(entry.item_id)
            if current.mode == "now":
                return current
            if current.wrapped_key is None:  # pragma: no cover - schema keeps them together
                raise CorruptContent("deferred item without a wrapped key")
            self._check_open()
            try:
                with _tpm_calls():
                    ke = hpke.open(
                        self._s.kem,
                        b64url_decode(current.wrapped_key),
                        info=hpke.content_key_info(current.order_id),
                    )
            except (HpkeError, EncodingError) as exc:
                raise CorruptContent("the stored wrapped key does not open") from exc
        if len(ke) != CONTENT_KEY_SIZE:
            raise CorruptContent("the stored wrapped key is not a 32-byte content key")
        content = self._s.content
        writer = content.writer(self._dek(), self._s.aead)
        try:
            decryptor = stream.Decryptor(ke, max_segment_size=MAX_SEGMENT_SIZE)
            for chunk in content.raw_chunks(current.blob):
                self._check_open()
                writer.write(decryptor.update(chunk))
            writer.write(decryptor.finalize())
        except (StreamError, FileNotFoundError) as exc:
            writer.abort()
            raise CorruptContent(f"stored content: {type(exc).__name__}") from exc
        except BaseException:
            writer.abort()
            raise
        if writer.length != current.length or not hmac.compare_digest(writer.sha256, current.sha256):
            writer.abort()
            raise CorruptContent("stored content does not match its hash")
        blob = writer.finish()
        try:
            with self.lock:
                again = self._entry(entry.item_id)
                if again == current:
                    new = current.model_copy(
                        update={
                            "blob": blob,
                            "mode": "now",
                            "wrapped_key": None,
                            "center_aead": None,
                            "center_segment_size": None,
                        }
                    )
                    body = self._body
                    library = {**body.library, new.item_id: new}
                    self._commit(lambda _c: body.model_copy(update={"library": library}))
        except (Unavailable, Tampered):
            raise
        except BaseException:
            content.delete(blob)
            raise
        if again != current:  # committed meanwhile (another first open, a repurchase): use that
            content.delete(blob)
            return again if again.mode == "now" else self._materialize(again)
        content.delete(current.blob)
        return new

    def delete_item(self, item_id: str) -> None:
        """Remove an item from the library (one commit), then its blob."""
        with self.lock:
            entry = self._entry(item_id)
            body = self._body
            library = {k: v for k, v in body.library.items() if k != item_id}
            self._commit(lambda _c: body.model_copy(update={"library": library}))
        self._s.content.delete(entry.blob)


def _same_message(a: str, b: str) -> bool:
    """The same signed message: equal canonical hashes (ES256's two signature forms hash alike) or the same
    payload bytes (the center signed it again)."""
    return message_hash(a) == message_hash(b) or a.split(".")[1:2] == b.split(".")[1:2]


def _enrollment_iat(record: EnrollmentRecord) -> int:
    """The iat of the accepted enrollment (verified when it was accepted; read from the state, not the PC)."""
    return Enrollment.model_validate_json(b64url_decode(record.enrollment.split(".")[1])).iat


@contextmanager
def _tpm_calls() -> Iterator[None]:
    """TPM failures inside wallet operations: a key unloaded by a concurrent lock, or the TPM unreachable."""
    try:
        yield
    except KeyNotLoaded as exc:
        raise Locked("the device was locked") from exc
    except TpmError as exc:
        raise Unavailable(f"TPM failure: {type(exc).__name__}") from exc


def _unverified_member(token: str, member: str) -> str:
    """A string member of a JWS payload, unverified: for routing only (which key set, which stored answer)."""
    try:
        return jws.unverified_member(token, member)
    except JwsError as exc:
        raise InvalidMessage(f"not a compact JWS with a {member}") from exc
