"""One printer (STYLE.md item 10): Rich for people, `--json` for programs."""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from protocol.api.catalog import ItemDetail, ItemSummary


def emit_json(value: BaseModel | dict[str, Any] | list[Any]) -> None:
    if isinstance(value, BaseModel):
        sys.stdout.write(value.model_dump_json() + "\n")
    else:
        sys.stdout.write(json.dumps(value) + "\n")


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def items_table(items: tuple[ItemSummary, ...]) -> None:
    table = Table("item", "title", "price", "kind", "bytes", "previews")
    for column in table.columns:
        column.overflow = "fold"
    table.columns[0].no_wrap = True
    for item in items:
        table.add_row(
            item.item_id,
            item.title,
            str(item.price),
            item.media_kind + (" bundle" if item.bundle else ""),
            str(item.content_length),
            ", ".join(f"{p.kind} {p.length} B" for p in item.previews),
        )
    _console().print(table)


def item_detail(item: ItemDetail) -> None:
    console = _console()
    console.print(f"[bold]{item.item_id}[/bold]  {item.title}")
    console.print(f"  price    {item.price}")
    console.print(
        f"  kind     {item.media_kind}{' bundle' if item.bundle else ''} ({item.content_media_type})"
    )
    console.print(f"  content  {item.content_length} bytes, sha256 {item.content_sha256}")
    if item.description:
        console.print(f"  about    {item.description}")
    for f in item.files:
        console.print(f"  file     {f.name} ({f.media_kind}, {f.length} bytes)")
    for p in item.previews:
        extra = f" {p.width}x{p.height}" if p.width else ""
        extra += f" {p.duration_ms / 1000:.1f} s" if p.duration_ms else ""
        origin = "generated" if p.generated else "seller's trial file"
        console.print(f"  preview  {p.n}: {p.kind} {p.media_type}, {p.length} bytes{extra} ({origin})")


def line(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def ledger_report(report: dict[str, Any]) -> None:
    console = _console()
    table = Table("account", "debits", "credits", "balance", "held", "available")
    for a in report["accounts"]:
        table.add_row(
            a["account"],
            str(a["debits"]),
            str(a["credits"]),
            str(a["balance"]),
            str(a["held"]),
            str(a["available"]),
        )
    console.print(table)
    for o in report["unpaid_deliveries"]:
        price = f"{o['price']['amount']} {o['price']['currency']}"
        console.print(f"unpaid delivery  {o['order_id']}  {o['device_id']}  {price}")
    for d in report["devices"]:
        console.print(f"device {d['state']}  {d['device_id']}  {d['reason'] or ''}")
    checks = report["checks"]
    verdict = "ok" if checks["ok"] else "FAILED"
    console.print(
        f"debits {checks['total_debits']} = credits {checks['total_credits']}: {checks['balanced']}; "
        f"resolutions match holds: {checks['resolutions_match_holds']}; "
        f"overdrawn: {checks['overdrawn'] or 'none'}; "
        f"ledger {verdict}"
    )
