"""Operator actions on the server host (CLI only, never routes): `center device revoke|reset`, `center ledger
report`.

revoke: orders and credits stop (payments for orders already made still settle); the token stays valid for
those payments. reset: the device's key binding is cleared so its next enrollment binds the keys it presents
(a reflashed board); its token dies; a `suspect` mark is lifted, a revocation is not; no money moves.
report: balances per account (debits, credits, open holds), unpaid deliveries, suspect and revoked devices,
and the checks: total debits = total credits, every post/void matches its hold, no liability overdrawn,
every limited account's running totals equal the sums over its transfers.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from center import ledger
from center.db import tx
from center.db.commerce import Device, LedgerTransfer, OrderRow
from center.services.common import Commerce, require_device


class AdminService:
    def __init__(self, commerce: Commerce) -> None:
        self.c = commerce

    def revoke(self, device_id: str) -> dict[str, Any]:
        with tx.write(self.c.sessions) as session:
            device = require_device(session, device_id)
            device.state, device.state_reason = "revoked", "revoked by the operator"
            device.updated_at = self.c.now()
            return {"device_id": device_id, "state": device.state}

    def reset(self, device_id: str) -> dict[str, Any]:
        with tx.write(self.c.sessions) as session:
            device = require_device(session, device_id)
            device.ek_hash, device.ak_public, device.kem_jwk, device.payment_jwk = "", "", "", ""
            device.token_hash = None
            if device.state == "suspect":
                device.state, device.state_reason = "active", None
            device.updated_at = self.c.now()
            return {"device_id": device_id, "state": device.state, "binding": "cleared"}

    def report(self, device_id: str | None = None) -> dict[str, Any]:
        with tx.read(self.c.sessions) as session:
            now = self.c.now()
            book = ledger.Ledger(session, now)
            everything = book.balances()
            shown = [b for b in everything if device_id is None or b.device_id == device_id]
            t = LedgerTransfer
            posted = t.flag.in_(ledger.POSTED)
            total = session.scalar(select(func.coalesce(func.sum(t.amount), 0)).where(posted)) or 0
            debits = sum(b.debits_posted for b in everything)
            credits = sum(b.credits_posted for b in everything)
            hold = aliased(LedgerTransfer)
            mismatched = session.scalar(
                select(func.count())
                .select_from(t)
                .join(hold, t.pending_id == hold.transfer_id)
                .where(
                    (t.amount != hold.amount)
                    | (t.debit_account != hold.debit_account)
                    | (t.credit_account != hold.credit_account)
                    | (hold.flag != "pending")
                )
            )
            overdrawn = [
                b.account_id for b in everything if b.kind in ("wallet", "coupon") and b.available < 0
            ]
            limited = [b for b in everything if ledger.is_limited(b.account_id)]
            recomputed = book.sums([b.account_id for b in limited])
            drifted = [
                b.account_id
                for b in limited
                if recomputed[b.account_id]
                != (b.debits_posted, b.credits_posted, b.debits_pending, b.credits_pending)
            ]
            unpaid = select(OrderRow).where(
                OrderRow.paid_at.is_(None), OrderRow.delivered_at.is_not(None), OrderRow.exp <= now
            )
            if device_id is not None:
                unpaid = unpaid.where(OrderRow.device_id == device_id)
            flagged = select(Device).where(Device.state != "active")
            if device_id is not None:
                flagged = flagged.where(Device.device_id == device_id)
            return {
                "accounts": [
                    {
                        "account": b.account_id,
                        "kind": b.kind,
                        "currency": b.currency,
                        "device_id": b.device_id,
                        "debits": b.debits_posted,
                        "credits": b.credits_posted,
                        "balance": b.balance,
                        "held": b.debits_pending,
                        "available": b.available,
                    }
                    for b in shown
                ],
                "unpaid_deliveries": [
                    {
                        "order_id": o.order_id,
                        "device_id": o.device_id,
                        "item_id": o.item_id,
                        "price": {"amount": o.price_amount, "currency": o.currency},
                        "exp": o.exp,
                    }
                    for o in session.scalars(unpaid.order_by(OrderRow.exp))
                ],
                "devices": [
                    {"device_id": d.device_id, "state": d.state, "reason": d.state_reason}
                    for d in session.scalars(flagged.order_by(Device.device_id))
                ],
                "checks": {
                    "total_debits": debits,
                    "total_credits": credits,
                    "transfers_posted": int(total),
                    "balanced": debits == credits == total,
                    "resolutions_match_holds": mismatched == 0,
                    "overdrawn": overdrawn,
                    "totals_drifted": drifted,
                    "ok": debits == credits == total and mismatched == 0 and not overdrawn and not drifted,
                },
            }
