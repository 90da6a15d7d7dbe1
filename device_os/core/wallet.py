"""Wallet operations on an unlocked device (DESIGN.md flows 3, 5.3-5.5, 6, 7; "Pricing"; "Time floor").

Every mutating operation verifies its center-signed message against the enrolled key set, raises the time
floor to the message's `iat` before judging `exp`, re-checks everything under the commit lock, and ends in
exactly one commit (or none, when refused: then the TPM counter, `state` and the content directory are
unchanged).

The purchase hot path issues four TPM commands: ECDH_ZGen (unwrap Ke), Sign (the payment), NV_Increment (the
commit), and NV_Read (the store reads the counter back after the increment; docs/device-purchases.md, a
deliberate deviation from DESIGN.md's three). The signed payment is written inside `state.next` before the
increment and returned only after it.
"""

from __future__ import annotations

import hmac

from device_os.core.answers import CreditAnswer, WalletView
from device_os.core.body import EnrollmentRecord, LibraryEntry, OutboxEntry, SettledEntry
from device_os.core.kernel import tpm_calls, unverified_member
from device_os.core.library import LibraryOps
from device_os.core.purchase import PurchaseOps
from device_os.errors import (
    AlreadyEnrolled,
    Conflict,
    CreditAlreadyApplied,
    InvalidMessage,
    InvalidReceipt,
    UnknownOrder,
    UntrustedKeyset,
)
from protocol import jws, pricing
from protocol.b64 import b64url_decode
from protocol.errors import EncodingError, JwsError
from protocol.keys import public_key_from_jwk, root_fingerprint
from protocol.messages import (
    Credit,
    Enrollment,
    Keyset,
    Receipt,
    Statement,
    message_hash,
)
from protocol.money import MAX_AMOUNT


class Wallet(PurchaseOps, LibraryOps):
    """The wallet service the HTTP layer calls (through `Device.wallet()`): enrollment, credits, receipts and
    statements here; purchases (purchase.py) and the library (library.py) through its bases; one commit each
    through the kernel (kernel.py)."""

    def view(self) -> WalletView:
        body = self._body
        return WalletView(
            device_id=self._session.device_id,
            counter=self._session.store.counter,
            time_floor=body.time_floor,
            purses=body.purses,
            outbox=tuple(body.outbox),
            enrolled=body.enrollment is not None,
        )

    def outbox(self) -> list[OutboxEntry]:
        return list(self._body.outbox.values())

    def library(self) -> list[LibraryEntry]:
        return list(self._body.library.values())

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
        with self.commit_lock:
            current = self._body.enrollment
            pinned = self._pinned_root or (current.root_fingerprint if current else None)
            if pinned is None and not self._trust_first_center:
                raise UntrustedKeyset(
                    "no center root is pinned (COFFER_DEVICE_PINNED_ROOT_FINGERPRINT) and trust on first use "
                    "is off (COFFER_DEVICE_TRUST_FIRST_CENTER)"
                )
            if pinned is not None and not hmac.compare_digest(pinned, fingerprint):
                raise UntrustedKeyset("the key set's root is not the pinned root")
            keyset_jws = unverified_member(enrollment_jws, "keyset")
            try:
                keyset = jws.verify(keyset_jws, Keyset, keys=root_key, now=self._body.time_floor)
            except JwsError as exc:
                raise UntrustedKeyset("the key set is not signed by the pinned root") from exc
            enrollment, floor = self._verify_center_message(
                enrollment_jws, Enrollment, keyset.signing_jwk.public_key()
            )
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

    def apply_credit(self, credit_jws: str) -> CreditAnswer:
        """Apply a verified `coffer-credit` once (its credit_id is remembered until it expires)."""
        with self.commit_lock:
            signing_key, _ = self._center_keys()
            credit, floor = self._verify_center_message(credit_jws, Credit, signing_key)
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

    def apply_receipt(self, receipt_jws: str) -> None:
        """Clear the outbox entry a `coffer-receipt` names (idempotent once settled)."""
        with self.commit_lock:
            signing_key, _ = self._center_keys()
            receipt, floor = self._verify_center_message(receipt_jws, Receipt, signing_key)
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
        with self.commit_lock:
            body = self._body
            payload = Statement(
                iss=self._session.device_id,
                iat=body.time_floor,
                device_id=self._session.device_id,
                counter=self._session.store.counter,
                purses=body.purses,
                outbox=tuple(sorted(body.outbox)),
                nonce=nonce,
            )
            self._check_open()
            with tpm_calls():
                return jws.sign(payload, self._session.payer)


def _same_message(a: str, b: str) -> bool:
    """The same signed message: equal canonical hashes (ES256's two signature forms hash alike) or the same
    payload bytes (the center signed it again)."""
    return message_hash(a) == message_hash(b) or a.split(".")[1:2] == b.split(".")[1:2]


def _enrollment_iat(record: EnrollmentRecord) -> int:
    """The iat of the accepted enrollment (verified when it was accepted; read from the state, not the PC)."""
    return Enrollment.model_validate_json(b64url_decode(record.enrollment.split(".")[1])).iat
