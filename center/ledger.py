"""The double-entry ledger (DESIGN.md "Center API", STYLE.md item 16), on the caller's session; never commits.

Accounts: `cash:CUR` (funds prepaid credits), `promotions:CUR` (coupons, tickets, welcome credit),
`revenue:CUR`, and per device the liabilities `wallet:DEVICE:CUR` and `coupon:CREDIT_ID`. A transaction
(`ledger_txns`, id chosen by the caller: `fund:<credit>`, `hold:<order>`, `settle:<order>`, ...) groups
immutable transfers, each one debit and one credit of the same amount, so debits equal credits by
construction; the same id again is the same transaction (`post` answers False and writes nothing).
A hold is a `pending` transfer, resolved exactly once (unique `pending_id`) by a `post` or a `void`
transfer. A liability's available balance is credits - debits - open holds; `require_covered` checks it in
the same database transaction, after the writes, so a transaction that would overdraw rolls back whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, exists, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import InstrumentedAttribute, Session, aliased

from center.db.commerce import LedgerAccount, LedgerTransfer, LedgerTxn
from center.db.tx import dialect
from center.errors import InsufficientFundsError

POSTED = ("posted", "post")


def cash(currency: str) -> str:
    return f"cash:{currency}"


def promotions(currency: str) -> str:
    return f"promotions:{currency}"


def revenue(currency: str) -> str:
    return f"revenue:{currency}"


def wallet(device_id: str, currency: str) -> str:
    return f"wallet:{device_id}:{currency}"


def coupon(credit_id: str) -> str:
    return f"coupon:{credit_id}"


@dataclass(frozen=True)
class Leg:
    """One transfer: `amount` from `debit` to `credit` (`transfer_id` unique, chosen by the caller)."""

    transfer_id: str
    debit: str
    credit: str
    amount: int
    currency: str


@dataclass(frozen=True)
class Balance:
    account_id: str
    kind: str
    currency: str
    device_id: str | None
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int

    @property
    def balance(self) -> int:
        """credits − debits posted (positive on a liability the center owes)."""
        return self.credits_posted - self.debits_posted

    @property
    def available(self) -> int:
        """What a liability can still pay: the balance minus its open holds."""
        return self.balance - self.debits_pending


class Ledger:
    def __init__(self, session: Session, now: int) -> None:
        self.session = session
        self.now = now

    # -- accounts -----------------------------------------------------------------------------------------
    def open_account(self, account_id: str, kind: str, currency: str, device_id: str | None = None) -> str:
        """Create the account if it does not exist (a concurrent creator is no error)."""
        values = {"account_id": account_id, "kind": kind, "currency": currency, "device_id": device_id}
        insert = pg_insert if dialect(self.session) == "postgresql" else sqlite_insert
        self.session.execute(insert(LedgerAccount).values(**values).on_conflict_do_nothing())
        return account_id

    def open_house_accounts(self, currency: str) -> None:
        for make, kind in ((cash, "cash"), (promotions, "promotions"), (revenue, "revenue")):
            self.open_account(make(currency), kind, currency)

    # -- transactions -------------------------------------------------------------------------------------
    def exists(self, txn_id: str) -> bool:
        return self.session.get(LedgerTxn, txn_id) is not None

    def post(
        self,
        txn_id: str,
        kind: str,
        legs: Sequence[Leg],
        *,
        pending: bool = False,
        order_id: str | None = None,
    ) -> bool:
        """Write transaction `txn_id` with `legs` (posted, or holds when `pending`); False if it exists."""
        if pending:
            return self.transact(txn_id, kind, holds=legs, order_id=order_id)
        return self.transact(txn_id, kind, legs=legs, order_id=order_id)

    def resolve(
        self, txn_id: str, kind: str, pending_ids: Iterable[str], *, post: bool, order_id: str | None = None
    ) -> bool:
        """Post (or void) open holds in one transaction `txn_id`; False if it exists."""
        ids = list(pending_ids)
        if post:
            return self.transact(txn_id, kind, post_holds=ids, order_id=order_id)
        return self.transact(txn_id, kind, void_holds=ids, order_id=order_id)

    def transact(
        self,
        txn_id: str,
        kind: str,
        *,
        legs: Sequence[Leg] = (),
        holds: Sequence[Leg] = (),
        post_holds: Iterable[str] = (),
        void_holds: Iterable[str] = (),
        order_id: str | None = None,
    ) -> bool:
        """One ledger transaction: new posted `legs`, new `holds`, and open holds posted or voided. False (and
        nothing written) if `txn_id` exists. Resolving a hold twice fails on the unique `pending_id`, which
        rolls the caller's database transaction back."""
        if self.exists(txn_id):
            return False
        self.session.add(LedgerTxn(txn_id=txn_id, kind=kind, order_id=order_id, created_at=self.now))
        self.session.flush()
        for leg in legs:
            self._add(txn_id, leg, "posted", None)
        for leg in holds:
            self._add(txn_id, leg, "pending", None)
        for flag, ids in (("post", post_holds), ("void", void_holds)):
            for pending_id in ids:
                hold = self.session.get(LedgerTransfer, pending_id)
                if hold is None or hold.flag != "pending":
                    raise ValueError(f"no hold {pending_id}")
                leg = Leg(
                    f"{txn_id}/{flag}/{pending_id}",
                    hold.debit_account,
                    hold.credit_account,
                    hold.amount,
                    hold.currency,
                )
                self._add(txn_id, leg, flag, pending_id)
        self.session.flush()
        return True

    def extend(self, txn_id: str, legs: Sequence[Leg]) -> None:
        """More posted legs for a transaction written earlier in this same database transaction."""
        for leg in legs:
            self._add(txn_id, leg, "posted", None)
        self.session.flush()

    def _add(self, txn_id: str, leg: Leg, flag: str, pending_id: str | None) -> None:
        if leg.amount <= 0:
            raise ValueError("a transfer moves a positive amount")
        self.session.add(
            LedgerTransfer(
                transfer_id=leg.transfer_id,
                txn_id=txn_id,
                debit_account=leg.debit,
                credit_account=leg.credit,
                amount=leg.amount,
                currency=leg.currency,
                flag=flag,
                pending_id=pending_id,
                created_at=self.now,
            )
        )

    def open_holds(self, txn_id: str) -> list[LedgerTransfer]:
        """The still-open pending transfers of transaction `txn_id`."""
        resolved = aliased(LedgerTransfer)
        query = select(LedgerTransfer).where(
            LedgerTransfer.txn_id == txn_id,
            LedgerTransfer.flag == "pending",
            ~exists().where(resolved.pending_id == LedgerTransfer.transfer_id),
        )
        return list(self.session.scalars(query.order_by(LedgerTransfer.transfer_id)))

    # -- balances -----------------------------------------------------------------------------------------
    def balances(
        self, account_ids: Iterable[str] | None = None, device_id: str | None = None
    ) -> list[Balance]:
        """Balances of the given accounts (or a device's, or all): four grouped sums, whatever the count."""
        accounts = select(LedgerAccount)
        if account_ids is not None:
            accounts = accounts.where(LedgerAccount.account_id.in_(list(account_ids)))
        if device_id is not None:
            accounts = accounts.where(LedgerAccount.device_id == device_id)
        found = list(self.session.scalars(accounts.order_by(LedgerAccount.account_id)))
        ids = [a.account_id for a in found]
        t, r = LedgerTransfer, aliased(LedgerTransfer)
        open_hold = and_(t.flag == "pending", ~exists().where(r.pending_id == t.transfer_id))
        posted = t.flag.in_(POSTED)
        sums = [
            self._sums(t.debit_account, posted, ids),
            self._sums(t.credit_account, posted, ids),
            self._sums(t.debit_account, open_hold, ids),
            self._sums(t.credit_account, open_hold, ids),
        ]
        return [
            Balance(a.account_id, a.kind, a.currency, a.device_id, *(s.get(a.account_id, 0) for s in sums))
            for a in found
        ]

    def _sums(
        self, column: InstrumentedAttribute[str], condition: ColumnElement[bool], ids: list[str]
    ) -> dict[str, int]:
        query = (
            select(column, func.sum(LedgerTransfer.amount)).where(condition, column.in_(ids)).group_by(column)
        )
        return {account: int(total) for account, total in self.session.execute(query)}

    def balance(self, account_id: str) -> Balance | None:
        found = self.balances([account_id])
        return found[0] if found else None

    def available(self, account_id: str) -> int:
        found = self.balance(account_id)
        return 0 if found is None else found.available

    def require_covered(self, account_ids: Iterable[str]) -> None:
        """Every liability listed still has balance − holds ≥ 0 (checked after the writes, before commit)."""
        for b in self.balances(account_ids):
            if b.available < 0:
                raise InsufficientFundsError(f"{b.account_id} would be overdrawn")
