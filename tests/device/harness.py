"""The power-cut campaign harness: drives tests/device/driver.py in child processes and kills them.

A crash point counts only if the kill landed while an operation was in flight (sent, no reply read). After
every kill the next child restarts the device, and the parent checks (from the device's own decrypted state):
- no false tamper flag; the TPM counter equals the state's counter;
- the committed operations are a prefix of the attempted ones (the in-flight one either committed or not);
- purses equal an independent replay of the committed operations through `protocol.pricing`;
- money is conserved: prepaid balance + prepaid debits in the outbox + settled == prepaid credited;
- nothing debited twice (one payment per order, distinct counters), the library matches the wallet, every
  blob decrypts to its hash and no orphan or temp file survives the first unlock;
- every payment opens with the center's payment key and verifies with the device's TPM payment key;
- the TPM's failed-try counter rose by exactly one per swtpm kill while unlocked and by nothing else.

The center here is the forger (tests/support/forger.py), not the real center: the plan is hand-timed. Each
epoch signs its ~400 messages up front from the seed, op i at iat = T0 + i (the model checks the device's time
floor against exactly that), coupons and tickets with a chosen exp, every order before any is bought (at the
real center each would hold funds), and receipts at the iat of their place in the plan. The same seed makes
the same plan (the cuts draw from the same generator, but a cut at a random moment lands on whatever request
is in flight when it falls due). The flows themselves run with the real center's messages in
test_device_swtpm.py and test_faults_swtpm.py (and over HTTP in tests/device_purchase/test_power_cuts.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from collections import Counter as Tally
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn

from device_os.core.faults import COMMIT_STEPS, CONTENT_STEPS
from protocol import jws, pricing
from protocol.errors import PricingShortfall
from protocol.keys import public_key_from_jwk
from protocol.messages import Payment, message_hash
from protocol.money import Money
from tests.support.forger import Forger
from tests.support.swtpm import SwtpmInstance

REPO = Path(__file__).resolve().parents[2]
PIN = "482913"
OpKind = Literal["credit", "purchase", "receipt"]


class CampaignError(AssertionError):
    pass


ANSWER_SECONDS = 60.0  # a reply takes well under a second; a child silent this long is stuck, not slow


class Driver:
    """One device process; `call()` returns the reply, or None when the process died (or was cut) first.

    One thread sends, waits for replies, SIGKILLs (a cut: `cut_after`) and reaps: no kill can reach a reaped
    (reused) pid, no timer thread outlives the child. Silence for `answer_seconds` is a hang, not a cut: the
    child's stacks go to the log (SIGUSR1), `CampaignError` is raised. `with Driver(...)` always reaps it.
    """

    answer_seconds = ANSWER_SECONDS

    def __init__(
        self, data_dir: Path, tcti: str, *, fault: str | None = None, log: Path | None = None
    ) -> None:
        env = dict(os.environ)
        env.update(
            COFFER_DEVICE_DATA_DIR=str(data_dir),
            COFFER_DEVICE_TCTI=tcti,
            COFFER_DEVICE_AUTO_LOCK_SECONDS="0",
            COFFER_DEVICE_TRUST_FIRST_CENTER="1",
            PYTHONPATH=str(REPO),
        )
        env.pop("COFFER_TEST_FAULT", None)
        if fault:
            env["COFFER_TEST_FAULT"] = fault  # read by the driver (test code), never by device_os
        self.log_path = log or data_dir.parent / "driver.log"
        self._cut_at: float | None = None
        self._pending = b""
        self._code: int | None = None
        with self.log_path.open("ab") as log_file:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.device.driver"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log_file,
                cwd=REPO,
                env=env,
            )
        try:
            self.ready = self._read("start") is not None
        except BaseException:  # e.g. pytest-timeout's Failed: no child or pipe may outlive a failed start
            self.kill()
            self.finish()
            raise

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:  # a failing test: cut the child rather than wait for it
            self.kill()
        self.finish()

    def cut_after(self, delay: float) -> None:
        """Power-cut the child `delay` seconds from now, at the first moment from then on that a request is in
        flight (sent, no reply read): the SIGKILL is sent while waiting for a reply."""
        self._cut_at = time.monotonic() + delay

    def call(self, op: str, **kw: Any) -> dict[str, Any] | None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps({"op": op, **kw}).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:  # BrokenPipeError: the child is gone
            return None
        return self._read(op)

    def must(self, op: str, **kw: Any) -> Any:
        reply = self.call(op, **kw)
        if reply is None or not reply["ok"]:
            raise AssertionError(f"{op} failed: {reply}")
        return reply["result"]

    def _read(self, op: str) -> dict[str, Any] | None:
        """The next reply line; None at end of file or once a due cut was sent."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + self.answer_seconds
        while b"\n" not in self._pending:
            now = time.monotonic()
            if self._cut_at is not None and now >= self._cut_at:
                self.kill()
                return None
            if now >= deadline:
                self._hung(op)
            wait = deadline - now if self._cut_at is None else min(deadline, self._cut_at) - now
            readable, _, _ = select.select([fd], [], [], wait)
            if readable:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    return None
                self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def _hung(self, op: str) -> NoReturn:
        self.proc.send_signal(signal.SIGUSR1)  # driver.py: faulthandler logs every thread's stack
        time.sleep(1.0)
        self.kill()
        self.finish()
        tail = self.log_path.read_bytes()[-6000:].decode(errors="replace")
        raise CampaignError(f"the driver did not answer {op!r} within {self.answer_seconds} s:\n{tail}")

    def kill(self) -> None:
        """SIGKILL the child unless it was reaped already (idempotent; the pid is still ours until reaped)."""
        self.proc.kill()  # Popen.send_signal: polls first, does nothing once the child was reaped

    def finish(self) -> int:
        """Ask the child to exit (if alive) and reap it; returns its exit code (-9 = SIGKILL). Idempotent."""
        if self._code is None:
            try:
                if self.proc.poll() is None:
                    self.call("exit")  # no reply: end of file as the child exits (or a hang: CampaignError)
                self._code = self.proc.wait(timeout=self.answer_seconds)
            except subprocess.TimeoutExpired:
                self._hung("exit")
            finally:
                for stream in (self.proc.stdin, self.proc.stdout):
                    if stream is not None:
                        with contextlib.suppress(OSError):  # a write buffer flushed into a dead pipe
                            stream.close()
        return self._code


@dataclass
class Op:
    index: int
    kind: OpKind
    credit: str | None = None
    credit_id: str | None = None
    credit_kind: str | None = None
    amount: int = 0
    item_id: str | None = None
    order: str | None = None
    order_id: str | None = None
    stream: Path | None = None
    price: int = 0
    ref: int | None = None  # receipt: index of its purchase
    iat: int = 0


@dataclass
class Model:
    """An independent replay of committed operations (plain data, protocol.pricing)."""

    purses: pricing.Purses = field(default_factory=pricing.Purses)
    spent: set[str] = field(default_factory=set)
    outbox: dict[str, tuple[pricing.Debit, ...]] = field(default_factory=dict)
    settled: set[str] = field(default_factory=set)
    library: set[str] = field(default_factory=set)
    floor: int = 0
    credited: int = 0

    def would_commit(self, op: Op) -> bool:
        if op.kind == "credit":
            return op.credit_id not in self.spent
        if op.kind == "receipt":
            assert op.ref is not None
            return op.order_id in self.outbox
        try:
            pricing.debits(Money(amount=op.price, currency="JPY"), self.purses, op.item_id or "")
        except PricingShortfall:
            return False
        return op.item_id not in self.library

    def apply(self, op: Op) -> None:
        assert self.would_commit(op), f"op {op.index} cannot commit in the model"
        self.floor = max(self.floor, op.iat)
        p = self.purses
        if op.kind == "credit":
            assert op.credit_id is not None
            self.spent.add(op.credit_id)
            if op.credit_kind == "prepaid":
                self.credited += op.amount
                p = p.model_copy(update={"prepaid": {"JPY": p.prepaid.get("JPY", 0) + op.amount}})
            elif op.credit_kind == "coupon":
                coupon = pricing.Coupon(
                    credit_id=op.credit_id, amount=Money(amount=op.amount, currency="JPY"), exp=op.iat + 10**7
                )
                p = p.model_copy(update={"coupons": (*p.coupons, coupon)})
            else:
                ticket = pricing.Ticket(credit_id=op.credit_id, item_id=op.item_id or "", exp=op.iat + 10**7)
                p = p.model_copy(update={"tickets": (*p.tickets, ticket)})
            self.purses = p
        elif op.kind == "purchase":
            price = Money(amount=op.price, currency="JPY")
            lines = pricing.debits(price, p, op.item_id or "")
            self.purses = pricing.apply(p, price, lines)
            assert op.order_id is not None
            assert op.item_id is not None
            self.outbox[op.order_id] = lines
            self.library.add(op.item_id)
        else:
            assert op.order_id is not None
            self.settled.add(op.order_id)
            self.outbox.pop(op.order_id)


def _prepaid(lines: Any) -> int:
    return sum(line["amount"] for line in lines if line["purse"] == "prepaid")


class Campaign:
    """Epochs of (fresh swtpm, fresh device, a random plan), killed at named steps and at random points."""

    def __init__(
        self,
        workdir: Path,
        new_tpm: Any,
        *,
        target: int,
        seed: int = 4,
        min_per_step: int = 5,
        tpm_kill_rate: float = 0.2,
        max_tpm_kills: int = 6,
    ) -> None:
        self.workdir = workdir
        self.new_tpm = new_tpm
        self.target = target
        self.rng = random.Random(seed)
        self.min_per_step = min_per_step
        self.tpm_kill_rate = tpm_kill_rate
        self.max_tpm_kills = max_tpm_kills
        self.points: Tally[tuple[str, str]] = Tally()  # (op kind, step) -> crash points
        self.runs = 0
        self.tpm_kills = 0
        self.epochs = 0
        self.checks = 0

    # -- coverage -----------------------------------------------------------------------------------------
    def steps_for(self, kind: OpKind) -> tuple[str, ...]:
        if kind == "credit":
            return COMMIT_STEPS
        if kind == "purchase":
            return COMMIT_STEPS + CONTENT_STEPS
        return ()

    def missing(self) -> list[tuple[str, str]]:
        return [
            (kind, step)
            for kind in ("credit", "purchase")
            for step in self.steps_for(kind)
            if self.points[(kind, step)] < self.min_per_step
        ]

    @property
    def total(self) -> int:
        return sum(self.points.values())

    def done(self) -> bool:
        return self.total >= self.target and not self.missing()

    # -- plan -----------------------------------------------------------------------------------------------
    def plan(self, center: Forger, device_id: str, kem: Any, epoch_dir: Path, n: int) -> list[Op]:
        ops: list[Op] = []
        purchases: list[int] = []
        for i in range(n):
            iat = center.now + i
            r = self.rng.random()
            if r < 0.33 or i < 2:
                amount = self.rng.randrange(100, 1200)
                cid = f"c{self.epochs}x{i}"
                token = center.credit(device_id, amount, kind="prepaid", credit_id=cid, iat=iat)
                ops.append(Op(i, "credit", token, cid, "prepaid", amount, iat=iat))
            elif r < 0.38:
                amount = self.rng.randrange(50, 300)
                cid = f"c{self.epochs}x{i}"
                token = center.credit(
                    device_id, amount, kind="coupon", credit_id=cid, iat=iat, exp=iat + 10**7
                )
                ops.append(Op(i, "credit", token, cid, "coupon", amount, iat=iat))
            elif r < 0.42:
                cid = f"c{self.epochs}x{i}"
                item = f"it{i + 1}"
                token = center.credit(
                    device_id, None, kind="ticket", item_id=item, credit_id=cid, iat=iat, exp=iat + 10**7
                )
                ops.append(Op(i, "credit", token, cid, "ticket", item_id=item, iat=iat))
            elif r < 0.9 or not purchases:
                item = f"it{i}"
                price = self.rng.randrange(50, 700)
                content = os.urandom(self.rng.randrange(1, 60000))
                order, stream_bytes = center.order_for(
                    device_id,
                    kem,
                    content,
                    item_id=item,
                    price=price,
                    iat=iat,
                    exp=iat + 10**7,
                    segment_size=8192,
                )
                path = epoch_dir / f"stream{i}"
                path.write_bytes(stream_bytes)
                oid = _member(order, "order_id")
                ops.append(
                    Op(
                        i,
                        "purchase",
                        item_id=item,
                        order=order,
                        order_id=oid,
                        stream=path,
                        price=price,
                        iat=iat,
                    )
                )
                purchases.append(i)
            else:
                ref = purchases.pop(self.rng.randrange(len(purchases)))
                ops.append(Op(i, "receipt", ref=ref, order_id=ops[ref].order_id, iat=iat))
        return ops

    # -- checks ---------------------------------------------------------------------------------------------
    def check(self, snap: dict[str, Any], model: Model, ops: list[Op], center: Forger, payer: Any) -> None:
        self.checks += 1
        body = snap["body"]
        fail = CampaignError
        if snap["counter"] != snap["tpm_counter"]:
            raise fail(f"state counter {snap['counter']} != TPM counter {snap['tpm_counter']}")
        purses = pricing.Purses.model_validate(body["purses"])
        if purses != model.purses:
            raise fail(f"purses {purses} != model {model.purses}")
        if set(body["spent_credits"]) != model.spent:
            raise fail("spent credit ids differ from the committed credits")
        if set(body["outbox"]) != set(model.outbox) or set(body["settled"]) != model.settled:
            raise fail("outbox/settled differ from the committed purchases and receipts")
        if set(body["outbox"]) & set(body["settled"]):
            raise fail("an order is both in the outbox and settled")
        if set(body["library"]) != model.library:
            raise fail(f"library {set(body['library'])} != purchases {model.library}")
        if body["time_floor"] != model.floor:
            raise fail(f"time floor {body['time_floor']} != {model.floor}")
        paid = [*body["outbox"].values(), *body["settled"].values()]
        counters = [e["counter"] for e in paid]
        if len(set(counters)) != len(counters):
            raise fail("two payments share a counter")
        balance = body["purses"]["prepaid"].get("JPY", 0)
        if balance + sum(_prepaid(e["debits"]) for e in paid) != model.credited:
            raise fail("money not conserved: balance + debited != credited")
        items = {e["item_id"] for e in paid}
        if items != set(body["library"]):
            raise fail("library does not match the wallet's payments")
        blobs = sorted(e["blob"] + ".cfs" for e in body["library"].values())
        if snap["listing"] != blobs:
            raise fail(f"content directory {snap['listing']} != library blobs {blobs}")
        if not all(snap["content_ok"].values()):
            raise fail("a stored item does not decrypt to its hash")
        if "state.next" in snap["data_listing"] or "setup.next" in snap["data_listing"]:
            raise fail(f"leftovers after recovery: {snap['data_listing']}")
        by_order = {op.order_id: op for op in ops if op.kind == "purchase"}
        for oid, entry in body["outbox"].items():
            token = center.open_payment(oid, entry["payment"])
            payment = jws.verify(token, Payment, keys=payer, now=0)
            if (
                payment.counter != entry["counter"]
                or [d.model_dump() for d in payment.debits] != entry["debits"]
            ):
                raise fail("payment does not match its outbox entry")
            if payment.order_hash != message_hash(by_order[oid].order or ""):
                match = [op.index for op in ops if op.order and message_hash(op.order) == payment.order_hash]
                raise fail(
                    f"payment for {oid} names another order: payment order_id {payment.order_id}, "
                    f"op {by_order[oid].index}, ops whose hash matches: {match}"
                )
            if tuple(payment.debits) != model.outbox[oid]:
                raise fail("payment debits differ from the pricing replay")

    # -- one epoch ------------------------------------------------------------------------------------------
    def epoch(self, plan_size: int = 400) -> None:
        self.epochs += 1
        epoch_dir = self.workdir / f"epoch{self.epochs}"
        epoch_dir.mkdir(parents=True)
        data = epoch_dir / "data"
        tpm: SwtpmInstance = self.new_tpm()
        center = Forger()
        self._center = center
        self._answers: dict[str, Any] = {}
        self._applied: set[int] = set()
        applied = self._applied
        with Driver(data, tpm.tcti) as d:
            assert d.ready
            d.must("provision")
            identity = d.must("setup", pin=PIN)
            st = d.must("unlock", pin=PIN)
            d.must("enroll", enrollment=center.enrollment(identity["device_id"]), root_jwk=center.root_jwk)
            assert d.finish() == 0
        device_id = identity["device_id"]
        self._device_id = device_id
        kem = public_key_from_jwk(identity["kem_jwk"])
        payer = public_key_from_jwk(identity["payment_jwk"])
        ops = self.plan(center, device_id, kem, epoch_dir, plan_size)
        model = Model(floor=center.now)
        expected_da = st["failed_tries"]
        tpm_kills = 0
        i = 0
        in_flight: int | None = None
        while i < len(ops) and tpm_kills < self.max_tpm_kills and not self.done():
            self.runs += 1
            op = ops[i]
            # choose the cut: a named step still short of coverage, another named step, or a random moment
            wanted = [s for k, s in self.missing() if k == op.kind]
            fault: str | None = None
            delay: float | None = None
            if wanted and self.rng.random() < 0.7:
                fault = self.rng.choice(wanted)
            elif self.steps_for(op.kind) and self.rng.random() < 0.4:
                fault = self.rng.choice(self.steps_for(op.kind))
            else:
                delay = self.rng.uniform(0.0, 0.12)
            cut_tpm = self.rng.random() < self.tpm_kill_rate
            with Driver(data, tpm.tcti, fault=fault) as d:
                assert d.ready, "driver did not start"
                status = d.must("status")
                if status["tampered"] or status["phase"] != "locked":
                    raise CampaignError(f"after a power cut the device is {status}")
                if status["failed_tries"] != expected_da:
                    raise CampaignError(f"DA failed tries {status['failed_tries']} != expected {expected_da}")
                d.must("unlock", pin=PIN)
                snap = d.must("inspect")
                retry = False
                if in_flight is not None:
                    pending = ops[in_flight]
                    body = snap["body"]
                    committed = {
                        "credit": pending.credit_id in body["spent_credits"],
                        "purchase": pending.order_id in body["outbox"] or pending.order_id in body["settled"],
                        "receipt": pending.order_id in body["settled"],
                    }[pending.kind]
                    if committed:
                        if pending.index not in applied:  # a retry cut again is already in the model
                            model.apply(pending)
                            applied.add(pending.index)
                        retry = True  # send it again: the stored answer / already applied, never twice
                    in_flight = None
                self.check(snap, model, ops, center, payer)
                if delay is not None:
                    d.cut_after(delay)
                crashed_at: int | None = None
                while i < len(ops):
                    op = ops[i]
                    reply = self._send(d, op, snap)
                    if reply is None:
                        crashed_at = i
                        break
                    self._resolve(op, reply, model, retried=retry, snap=snap)
                    retry = False
                    i += 1
                if crashed_at is None:
                    d.finish()
                    break
                d.kill()
                code = d.finish()
            if code != -signal.SIGKILL:
                raise CampaignError(f"driver exited with {code} (expected SIGKILL)")
            in_flight = crashed_at
            step = fault if fault is not None else "random"
            self.points[(ops[crashed_at].kind, step)] += 1
            if cut_tpm:  # an unplug cuts the TPM's power too (the driver was unlocked: one DA try)
                tpm.kill()
                tpm.start()
                tpm_kills += 1
                self.tpm_kills += 1
                expected_da += 1
        # final check on this epoch's device
        with Driver(data, tpm.tcti) as d:
            status = d.must("status")
            if status["tampered"] or status["failed_tries"] != expected_da:
                raise CampaignError(f"final status {status}, expected DA {expected_da}")
            d.must("unlock", pin=PIN)
            snap = d.must("inspect")
        if in_flight is not None:
            pending = ops[in_flight]
            body = snap["body"]
            if (
                (pending.kind == "credit" and pending.credit_id in body["spent_credits"])
                or (pending.kind == "purchase" and pending.order_id in {*body["outbox"], *body["settled"]})
                or (pending.kind == "receipt" and pending.order_id in body["settled"])
            ) and pending.index not in applied:
                model.apply(pending)
        self.check(snap, model, ops, center, payer)
        tpm.kill()

    def _send(self, d: Driver, op: Op, snap: dict[str, Any]) -> dict[str, Any] | None:
        if op.kind == "credit":
            return d.call("credit", credit=op.credit)
        if op.kind == "purchase":
            return d.call("purchase", order=op.order, stream=str(op.stream))
        assert op.order_id is not None
        # the receipt needs the payment: from the last reply or the device's outbox (as the terminal would)
        entry = snap["body"]["outbox"].get(op.order_id) or self._answers.get(op.order_id)
        if entry is None:
            return {"ok": False, "error": "skipped", "detail": "purchase was refused or is settled"}
        receipt = self._center.receipt_for_payment(self._device_id, op.order_id, entry["payment"], iat=op.iat)
        return d.call("receipt", receipt=receipt)

    def _resolve(self, op: Op, reply: dict[str, Any], model: Model, *, retried: bool, snap: Any) -> None:
        if retried:  # the op committed before the cut; its retry must not change anything
            if op.kind == "credit" and reply.get("error") != "credit-already-applied":
                raise CampaignError(f"credit retried after commit: {reply}")
            if op.kind == "purchase":
                stored = snap["body"]["outbox"].get(op.order_id)
                if not reply["ok"] or (stored and reply["result"]["payment"] != stored["payment"]):
                    raise CampaignError(
                        f"purchase retried after commit did not get the stored answer: {reply}"
                    )
            return
        if reply["ok"]:
            model.apply(op)
            self._applied.add(op.index)
            if op.kind == "purchase":
                self._answers[op.order_id or ""] = reply["result"]
            return
        if reply.get("error") == "skipped":
            return
        if op.kind == "purchase" and reply.get("error") in ("insufficient-funds", "already-owned"):
            if model.would_commit(op):
                raise CampaignError(f"purchase refused although the model can pay: {reply}")
            return
        raise CampaignError(f"unexpected refusal of op {op.index} ({op.kind}): {reply}")

    def run(self) -> dict[str, Any]:
        while not self.done():
            before = self.total
            self.epoch()
            if self.total == before:
                raise CampaignError("an epoch produced no crash point")
        return self.report()

    def report(self) -> dict[str, Any]:
        return {
            "crash_points": self.total,
            "runs": self.runs,
            "epochs": self.epochs,
            "tpm_kills": self.tpm_kills,
            "checks": self.checks,
            "per_step": {f"{k}:{s}": n for (k, s), n in sorted(self.points.items())},
        }


def _member(token: str, name: str) -> str:
    from protocol.b64 import b64url_decode

    value = json.loads(b64url_decode(token.split(".")[1]))[name]
    assert isinstance(value, str)
    return value
