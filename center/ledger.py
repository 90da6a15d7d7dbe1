"""The double-entry ledger (DESIGN.md "Center API", STYLE.md item 16), on the caller's session; never commits.

Accounts: `cash:CUR` (funds prepaid credits), `promotions:CUR` (coupons, tickets, welcome credit),
`revenue:CUR`, and per device the liabilities `wallet:DEVICE:CUR` and `coupon:CREDIT_ID`. A transaction
(`ledger_txns`, id chosen by the caller: `fund:<credit>`, `hold:<order>`, `settle:<order>`, ...) groups
immutable transfers, each one debit and one credit of the same amount, so debits equal credits by
construction; the same id again is the same transaction (`post` answers False and writes nothing).
A hold is a `pending` transfer, resolved exactly once (unique `pending_id`) by a `post` or a `void`
transfer. A device's liabilities (`wallet:`, `coupon:`) are *limited*: their running totals live on the
account row, changed by the same database transaction as the transfers, and a CHECK constraint refuses debits
(posted + pending) above credits, so a transaction that would overdraw fails in the database and rolls back
whole (`InsufficientFundsError`). The totals are a cache of the transfers; `sums()` recomputes them for
the report.

The write path (transactions, transfers, totals, holds) runs prebuilt SQLAlchemy Core statements on the
session's connection: compiled once per process (SQLAlchemy's statement cache), no unit of work, the
transfers of a transaction in one executemany, each limited account's totals moved by one UPDATE … RETURNING
its new available amount (docs/center-commerce.md "Performance").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, event, exists, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session, aliased

from center.db.commerce import LedgerAccount, LedgerTransfer, LedgerTxn, table
from center.db.group import ON_DURABLE
from center.db.prepared import Prepared
from center.db.tx import dialect
from center.errors import InsufficientFundsError

POSTED = ("posted", "post")

_TXNS = table(LedgerTxn)
_TRANSFERS = table(LedgerTransfer)
_ACCOUNTS = table(LedgerAccount)
_RESOLVED = _TRANSFERS.alias("resolved")
_HOLD_COLUMNS = (
    _TRANSFERS.c.transfer_id,
    _TRANSFERS.c.debit_account,
    _TRANSFERS.c.credit_account,
    _TRANSFERS.c.amount,
    _TRANSFERS.c.currency,
)
# Run on SQLite's DBAPI cursor (center.db.prepared): the orders' and payments' hot path.
_TXN_EXISTS = Prepared(select(_TXNS.c.txn_id).where(_TXNS.c.txn_id == bindparam("p_txn")))
_INSERT_TXN = Prepared(
    insert(_TXNS).values(
        txn_id=bindparam("txn_id"),
        kind=bindparam("kind"),
        order_id=bindparam("order_id"),
        created_at=bindparam("created_at"),
    )
)
_INSERT_TRANSFER = Prepared(insert(_TRANSFERS))
_OPEN_HOLDS = Prepared(
    select(*_HOLD_COLUMNS)
    .where(
        _TRANSFERS.c.txn_id == bindparam("p_txn"),
        _TRANSFERS.c.flag == "pending",
        ~exists().where(_RESOLVED.c.pending_id == _TRANSFERS.c.transfer_id),
    )
    .order_by(_TRANSFERS.c.transfer_id)
)
# one hold by id (a transaction resolves one or two: no expanding IN, whose compilation cost more)
_HOLD_BY_ID = Prepared(
    select(*_HOLD_COLUMNS, _TRANSFERS.c.flag).where(_TRANSFERS.c.transfer_id == bindparam("p_id"))
)
_AVAILABLE_EXPR = _ACCOUNTS.c.credits_posted - _ACCOUNTS.c.debits_posted - _ACCOUNTS.c.debits_pending
_AVAILABLE = Prepared(select(_AVAILABLE_EXPR).where(_ACCOUNTS.c.account_id == bindparam("p_account")))
_MOVE = Prepared(
    update(_ACCOUNTS)
    .where(_ACCOUNTS.c.account_id == bindparam("p_account"))
    .values(
        debits_posted=_ACCOUNTS.c.debits_posted + bindparam("p_dp"),
        credits_posted=_ACCOUNTS.c.credits_posted + bindparam("p_cp"),
        debits_pending=_ACCOUNTS.c.debits_pending + bindparam("p_dh"),
        credits_pending=_ACCOUNTS.c.credits_pending + bindparam("p_ch"),
    )
    .returning(_AVAILABLE_EXPR)
)


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
        self._moved: dict[str, int] = {}  # limited account -> its available amount after this ledger's writes
        self._connection: Any = None  # the session's connection (one per transaction; fetched once)

    # -- accounts -----------------------------------------------------------------------------------------
    def open_account(self, account_id: str, kind: str, currency: str, device_id: str | None = None) -> str:
        """Create the account if it does not exist (a concurrent creator is no error)."""
        bind = self.session.get_bind()
        key = (str(bind.engine.url), account_id)
        if key in _KNOWN:
            return account_id
        values = {
            "account_id": account_id,
            "kind": kind,
            "currency": currency,
            "device_id": device_id,
            "limited": is_limited(account_id),
            "debits_posted": 0,
            "credits_posted": 0,
            "debits_pending": 0,
            "credits_pending": 0,
        }
        insert = pg_insert if dialect(self.session) == "postgresql" else sqlite_insert
        self.session.execute(insert(LedgerAccount).values(**values).on_conflict_do_nothing())
        if kind in ("cash", "promotions", "revenue"):  # never removed: once committed, later orders skip this
            self.session.info.setdefault(_NEW, set()).add(key)
        return account_id

    def open_house_accounts(self, currency: str) -> None:
        for make, kind in ((cash, "cash"), (promotions, "promotions"), (revenue, "revenue")):
            self.open_account(make(currency), kind, currency)

    # -- transactions -------------------------------------------------------------------------------------
    def exists(self, txn_id: str) -> bool:
        return _TXN_EXISTS.one_or_none(self._conn(), {"p_txn": txn_id}) is not None

    def _conn(self) -> Any:
        """The session's connection, with the session's pending ORM changes written first (the Core statements
        below must see them, as a flush would)."""
        if self.session.new or self.session.dirty or self.session.deleted:
            self.session.flush()
        if self._connection is None:
            self._connection = self.session.connection()
        return self._connection

    def post(
        self,
        txn_id: str,
        kind: str,
        legs: Sequence[Leg],
        *,
        pending: bool = False,
        order_id: str | None = None,
        fresh: bool = False,
    ) -> bool:
        """Write transaction `txn_id` with `legs` (posted, or holds when `pending`); False if it exists.
        `fresh`: the caller just made the id up (a new order's), so the existence check is skipped; the
        primary key still refuses a duplicate."""
        if pending:
            return self.transact(txn_id, kind, holds=legs, order_id=order_id, fresh=fresh)
        return self.transact(txn_id, kind, legs=legs, order_id=order_id, fresh=fresh)

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
        fresh: bool = False,
        known: Sequence[Any] = (),
    ) -> bool:
        """One ledger transaction: new posted `legs`, new `holds`, and open holds posted or voided. False (and
        nothing written) if `txn_id` exists. Resolving a hold twice fails on the unique `pending_id`, which
        rolls the caller's database transaction back. `known`: rows of `open_holds` read earlier in this same
        database transaction (so still open, as this transaction alone resolves holds now): a hold among
        them is not read again."""
        if not fresh and self.exists(txn_id):
            return False
        conn = self._conn()
        _INSERT_TXN.execute(
            conn, {"txn_id": txn_id, "kind": kind, "order_id": order_id, "created_at": self.now}
        )
        rows: list[dict[str, Any]] = []
        deltas: dict[str, list[int]] = {}
        for leg in legs:
            rows.append(self._add(txn_id, leg, "posted", None, deltas))
        for leg in holds:
            rows.append(self._add(txn_id, leg, "pending", None, deltas))
        open_rows = {h.transfer_id: h for h in known}
        for flag, ids in (("post", list(post_holds)), ("void", list(void_holds))):
            if not ids:
                continue
            for pending_id in ids:
                hold = open_rows.get(pending_id)
                if hold is None:
                    hold = _HOLD_BY_ID.one_or_none(conn, {"p_id": pending_id})
                    if hold is None or hold.flag != "pending":
                        raise ValueError(f"no hold {pending_id}")
                leg = Leg(
                    f"{txn_id}/{flag}/{pending_id}",
                    hold.debit_account,
                    hold.credit_account,
                    hold.amount,
                    hold.currency,
                )
                rows.append(self._add(txn_id, leg, flag, pending_id, deltas))
        self._apply(rows, deltas)
        return True

    def extend(self, txn_id: str, legs: Sequence[Leg]) -> None:
        """More posted legs for a transaction written earlier in this same database transaction."""
        deltas: dict[str, list[int]] = {}
        rows = [self._add(txn_id, leg, "posted", None, deltas) for leg in legs]
        self._apply(rows, deltas)

    def _add(
        self, txn_id: str, leg: Leg, flag: str, pending_id: str | None, deltas: dict[str, list[int]]
    ) -> dict[str, Any]:
        if leg.amount <= 0:
            raise ValueError("a transfer moves a positive amount")
        # (debits_posted, credits_posted, debits_pending, credits_pending) per limited account
        for account, side in ((leg.debit, 0), (leg.credit, 1)):
            if not is_limited(account):
                continue
            d = deltas.setdefault(account, [0, 0, 0, 0])
            if flag in ("posted", "post"):
                d[side] += leg.amount
            if flag == "pending":
                d[2 + side] += leg.amount
            if flag in ("post", "void"):
                d[2 + side] -= leg.amount
        return {
            "transfer_id": leg.transfer_id,
            "txn_id": txn_id,
            "debit_account": leg.debit,
            "credit_account": leg.credit,
            "amount": leg.amount,
            "currency": leg.currency,
            "flag": flag,
            "pending_id": pending_id,
            "created_at": self.now,
        }

    def _apply(self, rows: list[dict[str, Any]], deltas: dict[str, list[int]]) -> None:
        """Write the transfers (one executemany), then move the limited accounts' totals; the CHECK refuses an
        overdraft. A duplicate transfer or resolution fails here, as an IntegrityError."""
        if self._connection is None:
            self._connection = self.session.connection()
        conn = self._connection
        if rows:
            _INSERT_TRANSFER.execute_many(conn, rows)
        for account in sorted(deltas):
            dp, cp, dh, ch = deltas[account]
            params = {"p_account": account, "p_dp": dp, "p_cp": cp, "p_dh": dh, "p_ch": ch}
            try:
                available = _MOVE.one(conn, params)[0]
            except IntegrityError as exc:
                raise InsufficientFundsError(f"{account} would be overdrawn") from exc
            self._moved[account] = int(available)

    def open_holds(self, txn_id: str) -> list[Any]:
        """The still-open pending transfers of transaction `txn_id` (rows: transfer_id, debit_account,
        credit_account, amount, currency)."""
        return _OPEN_HOLDS.rows(self._conn(), {"p_txn": txn_id})

    # -- balances -----------------------------------------------------------------------------------------
    def balances(
        self, account_ids: Iterable[str] | None = None, device_id: str | None = None
    ) -> list[Balance]:
        """Balances: a limited account's running totals, a house account's sums over its transfers."""
        accounts = select(LedgerAccount).execution_options(populate_existing=True)
        if account_ids is not None:
            accounts = accounts.where(LedgerAccount.account_id.in_(list(account_ids)))
        if device_id is not None:
            accounts = accounts.where(LedgerAccount.device_id == device_id)
        found = list(self.session.scalars(accounts.order_by(LedgerAccount.account_id)))
        house = [a.account_id for a in found if not a.limited]
        sums = self.sums(house) if house else {}
        out = []
        for a in found:
            totals = (
                (a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending)
                if a.limited
                else sums.get(a.account_id, (0, 0, 0, 0))
            )
            out.append(Balance(a.account_id, a.kind, a.currency, a.device_id, *totals))
        return out

    def sums(self, ids: list[str]) -> dict[str, tuple[int, int, int, int]]:
        """(debits posted, credits posted, debits pending, credits pending) recomputed from the transfers."""
        t, r = LedgerTransfer, aliased(LedgerTransfer)
        open_hold = and_(t.flag == "pending", ~exists().where(r.pending_id == t.transfer_id))
        posted = t.flag.in_(POSTED)
        parts = [
            self._sums(t.debit_account, posted, ids),
            self._sums(t.credit_account, posted, ids),
            self._sums(t.debit_account, open_hold, ids),
            self._sums(t.credit_account, open_hold, ids),
        ]
        return {
            i: (parts[0].get(i, 0), parts[1].get(i, 0), parts[2].get(i, 0), parts[3].get(i, 0)) for i in ids
        }

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
        """What a limited account can still pay (one row read; 0 for an account not opened yet)."""
        return self.available_or_none(account_id) or 0

    def available_or_none(self, account_id: str) -> int | None:
        value = _AVAILABLE.scalar(self._conn(), {"p_account": account_id})
        return None if value is None else int(value)

    def require_covered(self, account_ids: Iterable[str]) -> None:
        """Every liability listed still has balance − holds ≥ 0 (the CHECK constraint already holds it; this
        says so in the service's words). An account this ledger moved is judged by the amount its UPDATE
        returned; any other is read."""
        for account in account_ids:
            available = self._moved.get(account)
            if available is None:
                available = self.available(account)
            if available < 0:
                raise InsufficientFundsError(f"{account} would be overdrawn")


def is_limited(account_id: str) -> bool:
    """A device's liabilities may never be overdrawn; the house accounts may."""
    return account_id.startswith(("wallet:", "coupon:"))


_KNOWN: set[tuple[str, str]] = set()  # house accounts known to be committed (a cache, never a lock)
_NEW = "coffer.ledger.new_accounts"


@event.listens_for(Session, "after_commit")
def _remember_accounts(session: Session) -> None:
    new = session.info.pop(_NEW, ())
    later = session.info.get(ON_DURABLE)
    if later is not None:  # a savepoint of a group commit: known once the whole batch committed
        later.append(lambda: _KNOWN.update(new))
    else:
        _KNOWN.update(new)


@event.listens_for(Session, "after_rollback")
def _forget_accounts(session: Session) -> None:
    session.info.pop(_NEW, None)
