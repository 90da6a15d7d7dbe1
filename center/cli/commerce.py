"""Commerce administration on the server host (DESIGN.md "Center API": admin actions are CLI commands):
`center credit issue`, `center device revoke|reset`, `center ledger report`.

Exit codes (as the rest of `center`): 0 done, 2 bad input or an unknown device, 1 anything else;
`ledger report` exits 3 when a ledger check fails (debits ≠ credits, a resolution unlike its hold, an
overdrawn liability).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from center.cli import printer

if TYPE_CHECKING:
    from center.services.common import Commerce

credit_app = typer.Typer(no_args_is_help=True, help="Credits: one-time codes bound to a device.")
device_app = typer.Typer(no_args_is_help=True, help="Devices: revoke, reset the key binding.")
ledger_app = typer.Typer(no_args_is_help=True, help="The ledger.")

DataOpt = Annotated[Path | None, typer.Option("--data", help="Data directory [env COFFER_CENTER_DATA_DIR]")]
DbOpt = Annotated[
    str | None, typer.Option("--database-url", help="SQLAlchemy URL [default: SQLite in --data]")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON")]
REPORT_FAILED = 3


@contextmanager
def _commerce(data: Path | None, database_url: str | None) -> Iterator[Commerce]:
    from center.blobs import LocalBlobStore
    from center.cli.app import _settings
    from center.db.engine import make_engine, session_factory, upgrade
    from center.keys import load_or_create
    from center.services.common import Commerce

    settings = _settings(data, database_url)
    settings.prepare_data_dir()
    engine = make_engine(settings.sqlalchemy_url())
    try:
        upgrade(engine)
        keys = load_or_create(settings.keys_dir, None, create=False)
        yield Commerce(session_factory(engine), keys, settings, LocalBlobStore(settings.blobs_dir))
    finally:
        engine.dispose()


@credit_app.command("issue")
def credit_issue(
    device: Annotated[str, typer.Option("--device", help="The device_id the credit is for")],
    prepaid: Annotated[
        tuple[int, str] | None, typer.Option("--prepaid", help="AMOUNT CUR: money, funded from cash")
    ] = None,
    coupon: Annotated[
        tuple[int, str] | None, typer.Option("--coupon", help="AMOUNT CUR: a fixed amount off one purchase")
    ] = None,
    ticket: Annotated[str | None, typer.Option("--ticket", help="ITEM: one item free")] = None,
    expires: Annotated[int, typer.Option("--expires", help="Days until the credit expires (1..366)")] = 365,
    data: DataOpt = None,
    database_url: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print a one-time code for a credit (shown once; the center keeps only its HMAC)."""
    from center.errors import InvalidInputError
    from center.services.credits import CreditService, NewCredit

    given = [x for x in (prepaid, coupon, ticket) if x is not None]
    if len(given) != 1:
        raise InvalidInputError(
            "give exactly one of --prepaid AMOUNT CUR, --coupon AMOUNT CUR, --ticket ITEM"
        )
    if prepaid is not None:
        new = NewCredit(device, "prepaid", prepaid[0], prepaid[1].upper(), expires_days=expires)
    elif coupon is not None:
        new = NewCredit(device, "coupon", coupon[0], coupon[1].upper(), expires_days=expires)
    else:
        new = NewCredit(device, "ticket", item_id=ticket, expires_days=expires)
    with _commerce(data, database_url) as commerce:
        code, info = CreditService(commerce).issue(new)
    if as_json:
        printer.emit_json(info)
    else:
        printer.line(code)


@device_app.command("revoke")
def device_revoke(
    device_id: str, data: DataOpt = None, database_url: DbOpt = None, as_json: JsonOpt = False
) -> None:
    """Stop orders and credits for a device (a lost or stolen board); its payments still settle."""
    from center.services.admin import AdminService

    with _commerce(data, database_url) as commerce:
        result = AdminService(commerce).revoke(device_id)
    _done(result, as_json, f"center: revoked {device_id}")


@device_app.command("reset")
def device_reset(
    device_id: str, data: DataOpt = None, database_url: DbOpt = None, as_json: JsonOpt = False
) -> None:
    """Clear the device's key binding so its next enrollment binds new keys; moves no money."""
    from center.services.admin import AdminService

    with _commerce(data, database_url) as commerce:
        result = AdminService(commerce).reset(device_id)
    _done(result, as_json, f"center: the key binding of {device_id} is cleared")


def _done(result: dict[str, Any], as_json: bool, text: str) -> None:
    if as_json:
        printer.emit_json(result)
    else:
        printer.line(text)


@ledger_app.command("report")
def ledger_report(
    device: Annotated[str | None, typer.Option("--device", help="Only this device's accounts")] = None,
    data: DataOpt = None,
    database_url: DbOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Balances per account, unpaid deliveries, suspect devices; checks that debits equal credits."""
    from center.services.admin import AdminService

    with _commerce(data, database_url) as commerce:
        report = AdminService(commerce).report(device)
    if as_json:
        printer.emit_json(report)
    else:
        printer.ledger_report(report)
    return 0 if report["checks"]["ok"] else REPORT_FAILED
