"""Purchases (DESIGN.md flow 5.3): the stored answer, the order checked before its content is read, the
content staged (decrypted and re-encrypted, or kept as received in `deferred` mode), then one commit that
debits, signs and seals the payment. The payment is signed ahead in the background while the content
streams in.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from device_os.core.answers import PurchaseAnswer
from device_os.core.body import LibraryEntry, OutboxEntry, StateBody
from device_os.core.content import MAX_SEGMENT_SIZE, PendingBlob, import_stream
from device_os.core.kernel import WalletKernel, unverified_member
from device_os.errors import (
    AlreadyOwned,
    ContentMismatch,
    CorruptContent,
    InsufficientFunds,
    InvalidMessage,
    OrderSettled,
    Tampered,
    Unavailable,
)
from protocol import hpke, jws, pricing
from protocol.b64 import b64url_encode
from protocol.errors import PricingShortfall, StreamError
from protocol.jws import Signer
from protocol.messages import (
    Order,
    Payment,
    message_hash,
)

PurchaseMode = Literal["now", "deferred"]


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


class PurchaseOps(WalletKernel):
    """Wallet operations of a purchase."""

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
        order, floor = self._verify_center_message(order_jws, Order, signing_key)
        if order.item_id in self._body.library and not repurchase:
            raise AlreadyOwned(f"item {order.item_id} is already in the library")
        if order.segment_size > MAX_SEGMENT_SIZE:
            raise CorruptContent("the order's segment size exceeds the device's limit")
        try:
            pricing.debits(order.price, self._live(self._body.purses, floor), order.item_id)
        except PricingShortfall as exc:
            raise InsufficientFunds(str(exc)) from exc
        return order

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
        ke = self._unwrap_content_key(
            order.wrapped_key, order.order_id, refuse=InvalidMessage, source="the order's"
        )
        ahead = self._sign_ahead(order, order_jws) if order_jws is not None else None
        content = self._session.content
        writer = content.writer(self._dek(), self._session.aead) if mode == "now" else content.raw_writer()
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
            iss=self._session.device_id,
            iat=floor,
            order_id=order.order_id,
            order_hash=order_hash,
            device_id=self._session.device_id,
            counter=counter,
            debits=lines,
        )

    def _sign_ahead(self, order: Order, order_jws: str) -> SignedAhead | None:
        """The payment `commit_purchase` would build if it ran now, signed in the background. Read without
        the commit lock (a commit may be waiting for its blob under it): a stale guess costs a second Sign."""
        if self._closed:
            return None
        try:
            body, counter = self._body, self._session.store.counter
        except (Unavailable, Tampered):
            return None  # the commit reports it
        floor = max(body.time_floor, order.iat)
        try:
            lines = pricing.debits(order.price, self._live(body.purses, floor), order.item_id)
        except PricingShortfall:
            return None  # the commit refuses it
        payment = self._payment(order, message_hash(order_jws), floor, counter + 1, lines)
        return SignedAhead(payment, self._session.payer)

    def commit_purchase(
        self, order_jws: str, staged: StagedContent, *, repurchase: bool = False
    ) -> PurchaseAnswer:
        """Debit, sign and seal the payment, add outbox and library entries, raise the floor: one commit.

        The same order again returns the stored answer (and drops the new blob). A refusal drops the blob.
        """
        content = self._session.content
        try:
            with self.commit_lock:
                answer = self.stored_answer(unverified_member(order_jws, "order_id"))
                if answer is not None:
                    staged.settle()
                    content.delete(staged.blob)
                    return answer
                signing_key, payment_key = self._center_keys()
                order, floor = self._verify_center_message(order_jws, Order, signing_key)
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
                    payment_jws = staged.signed_for(payment) or jws.sign(payment, self._session.payer)
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
        answer = self.stored_answer(unverified_member(order_jws, "order_id"))
        if answer is not None:
            return answer
        order = self.verify_order(order_jws, repurchase=repurchase)
        staged = self.stage(order, chunks, mode, order_jws=order_jws)
        return self.commit_purchase(order_jws, staged, repurchase=repurchase)
