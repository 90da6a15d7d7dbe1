"""The one printer (STYLE.md 10): every command returns a value; this renders it for people (Rich) or as JSON.

Values are pydantic models, dataclasses, dicts, lists or `View`s (a JSON-able value plus how to draw it).
Errors go to stderr as one line (and a hint), never to stdout, so `--json` output stays parseable.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from rich.console import Console, RenderableType
from rich.markup import escape

__all__ = ["View", "error", "escape", "pairs", "plain", "purse", "show", "table"]
from rich.table import Table

from terminal_cli.errors import TerminalError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def plain(value: Any) -> Any:
    """`value` as plain JSON types."""
    if isinstance(value, View):
        return plain(value.data)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


@dataclass
class View:
    """A command's answer: `data` (what --json prints) and `draw` (what people see)."""

    data: Any
    draw: Callable[[], RenderableType | str | None]


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None) -> Table:
    grid = Table(title=title, title_justify="left", header_style="bold", show_edge=False)
    for column in columns:
        grid.add_column(column, overflow="fold")
    for row in rows:
        grid.add_row(*(str(c) if c is not None else "-" for c in row))
    return grid


def pairs(items: Sequence[tuple[str, Any]], *, title: str | None = None) -> Table:
    grid = Table.grid(padding=(0, 2))
    if title:
        grid.title = title
        grid.title_justify = "left"
        grid.title_style = "bold"
    grid.add_column(style="dim")
    grid.add_column()
    for key, value in items:
        grid.add_row(key, "-" if value is None else str(value))
    return grid


def purse(amounts: dict[str, int]) -> str:
    """{'JPY': 500} as "500 JPY" (minor units, as the wire carries them)."""
    return ", ".join(f"{amount} {currency}" for currency, amount in sorted(amounts.items())) or "0"


def show(value: Any, *, as_json: bool) -> None:
    if value is None:
        return
    if as_json:
        sys.stdout.write(json.dumps(plain(value), indent=2, sort_keys=True) + "\n")
        return
    if isinstance(value, View):
        drawn = value.draw()
        if drawn is not None:
            out.print(drawn)
        return
    data = plain(value)
    if isinstance(data, dict):
        out.print(pairs(list(data.items())))
    else:
        out.print(data)


def error(exc: TerminalError) -> None:
    err.print(f"[bold red]error[/]: {escape(str(exc))}")
    if exc.hint:
        err.print(f"[dim]hint: {escape(exc.hint)}[/]")
