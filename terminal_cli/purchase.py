"""`purchase` and `sync`: DESIGN.md flow 5 as the terminal runs it, safe to interrupt and re-run anywhere.

    journal: begun (key)  ──POST /v1/orders (Idempotency-Key)──▶  ordered (order)
    ordered ──GET center content (Range resume) ═▶ POST device /v1/purchases (one stream)──▶  paid (payment)
    paid ──POST center payment──▶ receipt ──POST device /v1/receipts──▶ journal entry removed

One order (the key is recorded before the center hears it), one debit (the device answers a committed
order from its stored answer, and the terminal looks in its outbox first), one settlement (the center answers
a repeated payment with the same receipt). The content goes from the center's response into the device's
request chunk by chunk (1 MiB), never whole in memory: the download runs in its own thread at most
`readahead.DEPTH` chunks ahead of the upload, so the two overlap; a center download that drops is resumed
with `Range` inside the same upload; an upload to the device that breaks restarts from byte 0 (DESIGN.md
flow 5.2).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from protocol.b64 import b64url_decode
from protocol.errors import EncodingError
from protocol.messages import Order
from protocol.money import Money
from terminal_cli._http import transport_errors
from terminal_cli.center import CHUNK, CenterClient
from terminal_cli.device import DeviceClient, Mode, PurchaseAnswer
from terminal_cli.errors import (
    AlreadyOwned,
    CenterUnreachable,
    DeviceUnreachable,
    InsufficientFunds,
    OrderExpired,
    ProblemError,
    TerminalError,
)
from terminal_cli.journal import Entry, Journal
from terminal_cli.readahead import ReadAhead, gathered

#: How many times a dropped center download is resumed (per purchase attempt) and a broken device upload
#: restarted before the purchase stops (it can be re-run: the journal keeps its place).
DOWNLOAD_RESUMES = 5
UPLOAD_RESTARTS = 2


class Reporter(Protocol):
    """What the purchase tells the person watching (the CLI draws it with Rich; tests may record it)."""

    def step(self, text: str) -> None: ...
    def transfer(self, total: int, text: str) -> Callable[[int], None]: ...
    def restart(self) -> None: ...


class Quiet:
    def step(self, text: str) -> None:
        pass

    def transfer(self, total: int, text: str) -> Callable[[int], None]:
        return lambda n: None

    def restart(self) -> None:
        pass


@dataclass
class PurchaseResult:
    item_id: str
    order_id: str
    price: Money | None
    debits: list[dict[str, Any]]
    counter: int | None
    mode: Mode
    streamed_bytes: int
    resumed_downloads: int
    seconds: float
    continued: bool  # a purchase begun earlier was finished


@dataclass
class SyncResult:
    purchases_finished: list[str] = field(default_factory=list)
    payments_relayed: list[str] = field(default_factory=list)
    receipts_delivered: list[str] = field(default_factory=list)
    statement: dict[str, Any] | None = None


@dataclass
class _Stream:
    """The content stream chunks for one upload, resuming the center download with Range when it drops."""

    center: CenterClient
    url: str
    total: int
    sent: int = 0
    resumes: int = 0

    def __iter__(self) -> Iterator[bytes]:
        while self.sent < self.total:
            try:
                with (
                    transport_errors("center", self.center.base_url),
                    self.center.download(self.url, start=self.sent, auth=True) as response,
                ):
                    if self.sent and response.status_code != 206:
                        raise TerminalError("center: the content answer ignored Range; cannot resume")
                    for chunk in gathered(response.iter_raw(), CHUNK):
                        if self.sent + len(chunk) > self.total:
                            raise TerminalError("center: the content is longer than the order says")
                        self.sent += len(chunk)
                        yield chunk
            except CenterUnreachable:
                self.resumes += 1
                if self.resumes > DOWNLOAD_RESUMES:
                    raise
                time.sleep(min(0.2 * self.resumes, 2.0))
                continue
            if self.sent < self.total:  # the answer ended early without an error: resume it too
                self.resumes += 1
                if self.resumes > DOWNLOAD_RESUMES:
                    raise CenterUnreachable("center: the content download keeps ending early")


def _ordered(entry: Entry) -> tuple[str, str]:
    if entry.order is None or entry.order_id is None:
        raise TerminalError(f"purchase journal entry for {entry.item_id} has no order")
    return entry.order, entry.order_id


def _price(order: str) -> Money | None:
    """The price the (unverified, for display only) order names; the device verifies it."""
    try:
        return Order.model_validate_json(b64url_decode(order.split(".")[1])).price
    except (ValueError, IndexError, EncodingError):
        return None


class Purchaser:
    def __init__(self, center: CenterClient, device: DeviceClient, journal: Journal, reporter: Reporter):
        self.center, self.device, self.journal, self.reporter = center, device, journal, reporter

    # -- purchase --------------------------------------------------------------------------------------
    def purchase(self, device_id: str, item_id: str, *, mode: Mode, repurchase: bool) -> PurchaseResult:
        started = time.monotonic()
        entry = self.journal.get(device_id, item_id)
        continued = entry is not None
        if entry is None:
            if not repurchase and any(i.item_id == item_id for i in self.device.library()):
                raise AlreadyOwned.locally("already-owned", f"{item_id} is in the device's library")
            entry = self.journal.begin(
                device_id=device_id,
                item_id=item_id,
                center=self.center.base_url,
                mode=mode,
                repurchase=repurchase,
            )
            self.reporter.step(f"idempotency key recorded ({entry.key[:11]}…)")
        return self._complete(entry, started, continued)

    def _complete(self, entry: Entry, started: float, continued: bool) -> PurchaseResult:
        stream: _Stream | None = None
        # ordered just now, by this run: the device has never seen this order. A continued entry without an
        # order may have lost its later steps (journal.py: only the key is durable): it is not fresh.
        fresh = entry.order is None and not continued
        if entry.order is None:
            entry = self._order(entry)
        order, order_id = _ordered(entry)
        answer: PurchaseAnswer | None = None
        if entry.payment is None:
            answer, stream = self._import(entry, fresh=fresh)
            entry = self.journal.update(entry, payment=answer.payment)
        debits, counter = self._settle(entry)
        self.journal.finish(entry)
        return PurchaseResult(
            item_id=entry.item_id,
            order_id=order_id,
            price=_price(order),
            debits=debits,
            counter=answer.counter if answer is not None and answer.counter >= 0 else counter,
            mode=entry.mode,
            streamed_bytes=stream.sent if stream else 0,
            resumed_downloads=stream.resumes if stream else 0,
            seconds=time.monotonic() - started,
            continued=continued,
        )

    def _order(self, entry: Entry) -> Entry:
        self.reporter.step(f"center: ordering {entry.item_id}")
        try:
            order = self.center.create_order(entry.item_id, entry.device_id, entry.key)
        except ProblemError as exc:
            # Refused (401, 402, 403, ...): no order exists, a re-run starts afresh. After a 5xx the order may
            # exist: the key stays, so a re-run gets that order, never a second one.
            if exc.problem.status < 500:
                self.journal.finish(entry)
            raise
        self.reporter.step(f"center: order {order.order_id} signed (hold placed), {order.content_length} B")
        return self.journal.update(
            entry,
            order_id=order.order_id,
            order=order.order,
            content_url=order.content_url,
            content_length=order.content_length,
        )

    def _committed(self, order_id: str) -> str | None:
        """The payment the device already committed for `order_id`, if any (its outbox)."""
        return next((e.payment for e in self.device.outbox() if e.order_id == order_id), None)

    def _import(self, entry: Entry, *, fresh: bool) -> tuple[PurchaseAnswer, _Stream | None]:
        """Stream the content into the device's import. An order from an earlier run may be committed on the
        device already: its outbox is asked first (no stream at all). An order made in this run (`fresh`) was
        journaled before any upload, so the device cannot have it: no round trip (and were it wrong, the
        device answers a committed order from its stored answer before reading the body)."""
        order, order_id = _ordered(entry)
        url, length = entry.content_url, entry.content_length
        if url is None or length is None:
            raise TerminalError(f"purchase journal entry for {entry.item_id} lacks the content URL")
        payment = None if fresh else self._committed(order_id)
        if payment is not None:
            self.reporter.step("device: this order is already committed (no second debit)")
            return PurchaseAnswer(order_id=order_id, payment=payment, counter=-1), None
        if not fresh and self.center.order(order_id).receipt is not None:
            # settled and receipted by an earlier run whose last journal steps were lost: nothing to stream
            self.reporter.step("center: this order is already settled (no second debit)")
            return PurchaseAnswer(order_id=order_id, payment="", counter=-1), None
        restarts = 0
        while True:
            advance = self.reporter.transfer(length, "center → device")
            stream = _Stream(self.center, url, length)
            try:
                # the download starts now (`start`) and overlaps the upload, from its request on
                with ReadAhead(stream, advance=advance).start() as body:
                    answer = self.device.purchase(
                        order, body, length, mode=entry.mode, repurchase=entry.repurchase
                    )
            except DeviceUnreachable:
                restarts += 1
                payment = self._committed(order_id) if restarts <= UPLOAD_RESTARTS else None
                if payment is not None:
                    return PurchaseAnswer(order_id=order_id, payment=payment, counter=-1), stream
                if restarts > UPLOAD_RESTARTS:
                    raise
                self.reporter.restart()
                continue
            except (OrderExpired, AlreadyOwned, InsufficientFunds):
                # refused for good (by the device, or the center's order-expired): a re-run orders afresh
                self.journal.finish(entry)
                raise
            except ProblemError as exc:
                if exc.slug == "order-settled":  # committed and receipted earlier: finish the bookkeeping
                    return PurchaseAnswer(order_id=order_id, payment="", counter=-1), stream
                raise
            self.reporter.step(
                f"device: Ke unwrapped in the TPM, payment signed, state counter {answer.counter}"
            )
            return answer, stream

    def _settle(self, entry: Entry) -> tuple[list[dict[str, Any]], int | None]:
        _, order_id = _ordered(entry)
        if entry.payment:
            self.reporter.step("center: settling the payment")
            paid = self.center.pay(order_id, entry.payment)
            receipt = paid.receipt
            debits = [d.model_dump(mode="json", exclude_none=True) for d in paid.debits]
        else:  # the device had the receipt already (order-settled): the center has it too
            status = self.center.order(order_id)
            if status.receipt is None:
                raise TerminalError(f"center: order {order_id} is not paid but the device settled it")
            receipt, debits = status.receipt, []
        self.device.receipt(receipt)
        self.reporter.step("device: receipt stored, outbox cleared")
        return debits, None

    # -- sync ------------------------------------------------------------------------------------------
    def sync(self, device_id: str, *, statement: bool = True) -> SyncResult:
        result = SyncResult()
        for entry in list(self.journal.pending(device_id)):
            if entry.center != self.center.base_url:
                continue
            self.reporter.step(f"finishing the interrupted purchase of {entry.item_id}")
            done = self._complete(entry, time.monotonic(), True)
            result.purchases_finished.append(done.order_id)
        for waiting in self.device.outbox():
            self.reporter.step(f"relaying the payment of {waiting.order_id}")
            paid = self.center.pay(waiting.order_id, waiting.payment)
            result.payments_relayed.append(waiting.order_id)
            self.device.receipt(paid.receipt)
            result.receipts_delivered.append(waiting.order_id)
        if statement:
            nonce = secrets.token_urlsafe(24)
            signed = self.device.statement(nonce)
            answer = self.center.post_statement(signed)
            result.statement = answer.model_dump(mode="json")
        return result


__all__ = ["PurchaseResult", "Purchaser", "Quiet", "Reporter", "SyncResult"]
