"""Shopping commands: `catalog`, `show`, `preview`, `purchase`, `library`, `open`, `delete`, `wallet`,
`redeem`, `receipts`, `sync`."""

from __future__ import annotations

import contextlib
import hashlib
import mimetypes
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn, TransferSpeedColumn

from terminal_cli import render
from terminal_cli.cli import app, command, session, state
from terminal_cli.device import Mode
from terminal_cli.errors import ProblemError, TerminalError, UsageError
from terminal_cli.purchase import Purchaser, PurchaseResult, Quiet, Reporter
from terminal_cli.render import View

ItemArg = Annotated[str, typer.Argument(help="An item id (itm_…) as `catalog` lists them")]


def _money(value: Any) -> str:
    if value is None:
        return "-"
    data = value.model_dump() if hasattr(value, "model_dump") else value
    return f"{data['amount']} {data['currency']}"


@command(app, "catalog")
def catalog(
    search: Annotated[str | None, typer.Option(help="Only items whose title or description has TEXT")] = None,
) -> View:
    """The center's catalog."""
    items = list(session().center.items())
    if search:
        needle = search.casefold()
        items = [i for i in items if needle in i.title.casefold() or needle in i.description.casefold()]
    rows = [
        (
            i.item_id,
            i.title,
            _money(i.price),
            i.media_kind + (" bundle" if i.bundle else ""),
            i.content_length,
        )
        for i in items
    ]
    return View(
        items, lambda: render.table(["item", "title", "price", "kind", "bytes"], rows) if rows else "no items"
    )


@command(app, "show")
def show(item: ItemArg) -> View:
    """One item: price, files, previews."""
    detail = session().center.item(item)

    def draw() -> Any:
        rows: list[tuple[str, Any]] = [
            ("title", detail.title),
            ("price", _money(detail.price)),
            ("kind", detail.media_kind),
            ("media type", detail.content_media_type),
            ("bytes", detail.content_length),
            ("SHA-256", detail.content_sha256),
            ("description", detail.description or "-"),
        ]
        rows += [
            (f"file {n}", f"{f.name} ({f.media_kind}, {f.length} B)") for n, f in enumerate(detail.files)
        ]
        rows += [(f"preview {p.n}", f"{p.kind} {p.media_type} {p.length} B") for p in detail.previews]
        return render.pairs(rows, title=detail.item_id)

    return View(detail, draw)


@contextlib.contextmanager
def _output(path: str, default_name: str) -> Iterator[tuple[IO[bytes], str]]:
    """A binary sink: stdout for "-", else a file written beside its target and renamed when complete."""
    if path == "-":
        yield sys.stdout.buffer, "-"
        sys.stdout.buffer.flush()
        return
    target = Path(path or default_name)
    if target.is_dir():
        target = target / default_name
    fd, tmp = tempfile.mkstemp(dir=target.parent or Path("."), prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh, str(target)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _copy(chunks: Iterable[bytes], sink: IO[bytes]) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    for chunk in chunks:
        sink.write(chunk)
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


@command(app, "preview")
def preview(
    item: ItemArg,
    output: Annotated[
        str, typer.Option("-o", "--output", help="File (default: ITEM-preview-N.EXT) or - for stdout")
    ] = "",
    number: Annotated[int, typer.Option("-n", help="Which preview (0 = the first)")] = 0,
) -> View:
    """Download an advertising preview (free; no device needed)."""
    center = session().center
    detail = center.item(item)
    descriptor = next((p for p in detail.previews if p.n == number), None)
    if descriptor is None:
        raise UsageError(f"{item} has no preview {number} (it has {len(detail.previews)})")
    name = f"{item}-preview-{number}{mimetypes.guess_extension(descriptor.media_type) or '.bin'}"
    with center.download(descriptor.url) as response, _output(output, name) as (sink, where):
        size, sha = _copy(response.iter_bytes(1024 * 1024), sink)
    data = {
        "item_id": item,
        "preview": number,
        "path": where,
        "bytes": size,
        "sha256": sha,
        "verified": sha == descriptor.sha256,
    }
    return View(data, lambda: f"preview {number} of {item}: {size} B {descriptor.media_type} -> {where}")


class _RichReporter:
    """Rich progress on stderr: one line per step, a bar for the center → device stream (drawn only once
    there is something to show, so a command that streams nothing leaves no blank line)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: Any = None
        self.started = False

    def _live(self) -> Progress:
        if not self.started:
            self.progress.start()
            self.started = True
        return self.progress

    def step(self, text: str) -> None:
        self.progress.console.print(f"  [green]✓[/] {render.escape(text)}")

    def transfer(self, total: int, text: str) -> Callable[[int], None]:
        progress = self._live()
        if self.task is not None:
            progress.remove_task(self.task)
        task = self.task = progress.add_task(text, total=total)

        def advance(n: int) -> None:
            progress.advance(task, n)
            if progress.tasks[-1].completed >= total:
                progress.update(task, description="device: checking SHA-256, committing (TPM)")

        return advance

    def restart(self) -> None:
        self.progress.console.print("  [yellow]↻[/] the upload to the device broke: restarting from byte 0")


@contextlib.contextmanager
def _reporter() -> Iterator[Reporter]:
    if state().as_json or (not render.err.is_terminal and not os.environ.get("COFFER_PROGRESS")):
        yield Quiet()
        return
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
    )
    reporter = _RichReporter(Progress(*columns, console=render.err, transient=True))
    try:
        yield reporter
    finally:
        if reporter.started:
            reporter.progress.stop()


def _open_to(item: str, output: str) -> dict[str, Any]:
    s = session()
    device = s.unlocked_device()
    owned = {i.item_id: i for i in device.library()}
    if item not in owned:
        raise ProblemError.locally("not-found", f"{item} is not in the device's library")
    with device.content(item) as chunks, _output(output, item) as (sink, where):
        size, sha = _copy(chunks, sink)
    if sha != owned[item].sha256:
        raise TerminalError(
            f"device: {item}'s content does not match its SHA-256 ({where} is not trustworthy)"
        )
    return {"item_id": item, "path": where, "bytes": size, "sha256": sha}


@command(app, "purchase")
def purchase(
    item: ItemArg,
    mode: Annotated[
        str, typer.Option(help="now: decrypt at import; deferred: keep the center's stream")
    ] = "now",
    repurchase: Annotated[
        bool, typer.Option("--repurchase", help="Buy an item the library holds again")
    ] = False,
    output: Annotated[
        str | None, typer.Option("-o", "--output", help="Also open it into FILE (- for stdout)")
    ] = None,
) -> View:
    """Buy ITEM: order, stream center → device, TPM commit, payment, receipt. Safe to interrupt and re-run."""
    if mode not in ("now", "deferred"):
        raise UsageError("--mode is now or deferred")
    import_mode: Mode = "now" if mode == "now" else "deferred"
    s = session()
    device = s.unlocked_device()
    center = s.enrolled_center()
    device_id = s.device_id()
    with _reporter() as reporter:
        result = Purchaser(center, device, s.journal(), reporter).purchase(
            device_id, item, mode=import_mode, repurchase=repurchase
        )
    opened = _open_to(item, output) if output is not None else None
    return View({**render.plain(result), "opened": opened}, lambda: _purchase_lines(result, opened))


def _purchase_lines(result: PurchaseResult, opened: dict[str, Any] | None) -> str:
    debits = ", ".join(f"{d['purse']} {d['amount']}" for d in result.debits) or "as before"
    mib = result.streamed_bytes / 2**20
    lines = [
        f"[bold green]bought[/] {result.item_id} for {_money(result.price)} "
        f"(order {result.order_id}; debits: {debits})",
        f"  {mib:.1f} MiB streamed center → device in {result.seconds:.2f} s"
        + (f", {result.resumed_downloads} download resume(s)" if result.resumed_downloads else "")
        + (", an interrupted purchase finished" if result.continued else ""),
    ]
    if opened:
        lines.append(f"  opened -> {opened['path']} ({opened['bytes']} B, SHA-256 checked)")
    return "\n".join(lines)


@command(app, "library")
def library() -> View:
    """What the board holds."""
    items = session().unlocked_device().library()
    rows = [(i.item_id, i.mode, i.length, i.order_id, i.sha256[:16] + "…") for i in items]
    return View(
        items,
        lambda: (
            render.table(["item", "mode", "bytes", "order", "SHA-256"], rows) if rows else "library is empty"
        ),
    )


@command(app, "open")
def open_item(
    item: ItemArg,
    output: Annotated[str, typer.Option("-o", "--output", help="File to write, or - for stdout")] = ...,  # type: ignore[assignment]
) -> View:
    """Stream an owned item's plaintext out of the board into FILE (or stdout with -)."""
    data = _open_to(item, output)
    return View(
        data,
        lambda: (
            None if data["path"] == "-" else f"{item}: {data['bytes']} B -> {data['path']} (SHA-256 checked)"
        ),
    )


@command(app, "delete")
def delete(item: ItemArg) -> View:
    """Remove an item from the board's library (its payment stays)."""
    session().unlocked_device().delete(item)
    return View({"item_id": item, "deleted": True}, lambda: f"{item} deleted from the library")


@command(app, "wallet")
def wallet() -> View:
    """The board's purses, counter and outbox."""
    w = session().unlocked_device().wallet()

    def draw() -> Any:
        rows: list[tuple[str, Any]] = [
            ("device", w.device_id),
            ("enrolled", w.enrolled),
            ("state counter", w.counter),
        ]
        rows += [(f"prepaid {cur}", amount) for cur, amount in sorted(w.purses.prepaid.items())] or [
            ("prepaid", 0)
        ]
        rows += [
            ("coupons", len(w.purses.coupons)),
            ("tickets", len(w.purses.tickets)),
            ("unsettled payments", len(w.outbox)),
        ]
        return render.pairs(rows, title="wallet")

    return View(w, draw)


@command(app, "redeem")
def redeem(code: Annotated[str, typer.Argument(help="A one-time credit code from the seller")]) -> View:
    """Redeem a credit code at the center and put the credit on the board."""
    s = session()
    device = s.unlocked_device()
    credit = s.enrolled_center().redeem(code, s.device_id())
    try:
        device.apply_credit(credit.credit)
    except ProblemError as exc:
        if exc.slug != "credit-already-applied":
            raise
    w = device.wallet()
    what = _money(credit.amount) if credit.amount else f"ticket for {credit.item_id}"
    data = {**credit.model_dump(mode="json", exclude={"credit"}), "prepaid": w.purses.prepaid}
    return View(
        data,
        lambda: (
            f"credit {credit.credit_id} ({credit.kind}, {what}) applied; "
            f"prepaid now {render.purse(w.purses.prepaid)}"
        ),
    )


@command(app, "receipts")
def receipts() -> View:
    """Each purchase on the board and its settlement at the center (paid, or waiting in the outbox)."""
    s = session()
    device = s.unlocked_device()
    center = s.enrolled_center()
    waiting = {e.order_id for e in device.outbox()}
    rows: list[dict[str, Any]] = []
    for item in device.library():
        status = center.order(item.order_id)
        rows.append(
            {
                "item_id": item.item_id,
                "order_id": item.order_id,
                "price": status.price.model_dump(),
                "state": status.state,
                "receipt_on_device": item.order_id not in waiting,
                "receipt": status.receipt,
            }
        )
    table_rows = [
        (
            r["item_id"],
            r["order_id"],
            _money(r["price"]),
            r["state"],
            "yes" if r["receipt_on_device"] else "no (sync)",
        )
        for r in rows
    ]
    return View(
        rows,
        lambda: (
            render.table(["item", "order", "price", "center", "receipt on board"], table_rows)
            if rows
            else "no purchases"
        ),
    )


@command(app, "sync")
def sync() -> View:
    """Finish interrupted purchases, re-send unsettled payments, deliver receipts, post a signed statement."""
    s = session()
    device = s.unlocked_device()
    center = s.enrolled_center()
    with _reporter() as reporter:
        result = Purchaser(center, device, s.journal(), reporter).sync(s.device_id())

    def draw() -> str:
        st = result.statement or {}
        match = "matches the center's ledger" if st.get("matches") else f"differs: {st.get('differences')}"
        return (
            f"purchases finished {len(result.purchases_finished)}, "
            f"payments relayed {len(result.payments_relayed)}, "
            f"receipts delivered {len(result.receipts_delivered)}; "
            f"statement (counter {st.get('counter')}) {match}"
        )

    return View(result, draw)
