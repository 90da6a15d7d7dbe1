"""`center` commands. Each parses, calls a service, and hands the result to the printer.

Errors end as one line on stderr and a non-zero exit (2: bad input or usage, 1: anything else), no traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError

from center.cli import commerce, printer
from center.errors import CenterError, InvalidInputError, NotFoundError, UnsupportedMediaError
from center.settings import CenterSettings
from protocol.api.catalog import ItemSummary

if TYPE_CHECKING:
    from center.services.catalog import CatalogService

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Coffer center: catalog, previews, storefront, enrollment, orders, ledger.",
)
db_app = typer.Typer(no_args_is_help=True, help="Database schema (Alembic).")
keys_app = typer.Typer(no_args_is_help=True, help="The center's keys.")
item_app = typer.Typer(no_args_is_help=True, help="Catalog administration (on the server host only).")
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(item_app, name="item")
app.add_typer(commerce.credit_app, name="credit")
app.add_typer(commerce.device_app, name="device")
app.add_typer(commerce.ledger_app, name="ledger")

DataOpt = Annotated[Path | None, typer.Option("--data", help="Data directory [env COFFER_CENTER_DATA_DIR]")]
DbOpt = Annotated[
    str | None, typer.Option("--database-url", help="SQLAlchemy URL [default: SQLite in --data]")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON")]


def _settings(data: Path | None, database_url: str | None = None, **more: Any) -> CenterSettings:
    given: dict[str, Any] = {"data_dir": data, "database_url": database_url, **more}
    return CenterSettings(**{k: v for k, v in given.items() if v is not None})


def _catalog(settings: CenterSettings) -> CatalogService:
    from center.blobs import LocalBlobStore
    from center.db.engine import make_engine, session_factory, upgrade
    from center.services.catalog import CatalogService

    settings.prepare_data_dir()
    engine = make_engine(settings.sqlalchemy_url())
    upgrade(engine)
    return CatalogService(
        session_factory(engine), LocalBlobStore(settings.blobs_dir), settings.data_dir / "tmp"
    )


@app.command()
def serve(
    data: DataOpt = None,
    listen: Annotated[str | None, typer.Option("--listen", help="HOST:PORT [default 127.0.0.1:8440]")] = None,
    database_url: DbOpt = None,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="PEM certificate (HTTPS)")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="PEM private key (HTTPS)")] = None,
    issuer: Annotated[
        str | None, typer.Option("--issuer", help="Public URL of the center (keyset iss)")
    ] = None,
    ek_ca: Annotated[
        list[Path] | None,
        typer.Option(
            "--ek-ca", help="PEM file of trusted EK CA certificates (repeatable) [env COFFER_CENTER_EK_CA]"
        ),
    ] = None,
    allow_unattested: Annotated[
        bool | None, typer.Option("--allow-unattested", help="Tests and demos only: skip the EK chain check")
    ] = None,
    welcome_credit: Annotated[
        int | None, typer.Option("--welcome-credit", help="Welcome credit once per EK (minor units; 0: none)")
    ] = None,
    max_unpaid: Annotated[
        int | None, typer.Option("--max-unpaid", help="Unpaid deliveries before orders stop")
    ] = None,
    sqlite_synchronous: Annotated[
        str | None,
        typer.Option(
            "--sqlite-synchronous",
            help="full (default: every commit survives a power loss) or normal (faster; a power loss may "
            "undo the last commits)",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", help="Server processes sharing the socket [default 1; env COFFER_CENTER_WORKERS]"
        ),
    ] = None,
) -> None:
    """Migrate the database, load (or create) the keys, and serve the center."""
    import uvicorn

    from center.api import serving
    from center.api.app import create_app
    from center.db.engine import make_engine, upgrade
    from center.keys import load_or_create

    settings = _settings(
        data,
        database_url,
        listen=listen,
        tls_cert=tls_cert,
        tls_key=tls_key,
        issuer=issuer,
        ek_ca=tuple(ek_ca) if ek_ca else None,
        allow_unattested=allow_unattested or None,
        welcome_credit=welcome_credit,
        max_unpaid=max_unpaid,
        sqlite_synchronous=sqlite_synchronous,
        workers=workers,
    )
    host, port = settings.check_serving()
    settings.prepare_data_dir()
    engine = make_engine(settings.sqlalchemy_url())
    upgrade(engine)
    engine.dispose()
    keys = load_or_create(settings.keys_dir, settings.issuer_url())  # once, before any worker starts
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "info",
        "server_header": False,
        "loop": "uvloop",  # libuv event loop and httptools' C parser, as the device service uses
        "http": "httptools",
        "ssl_certfile": str(settings.tls_cert) if settings.tls_cert else None,
        "ssl_keyfile": str(settings.tls_key) if settings.tls_key else None,
    }
    shown = f"center: serving {settings.issuer_url()}/ (root fingerprint {keys.root_fingerprint})"
    if settings.workers == 1:
        application = create_app(settings, keys=keys)
        printer.line(shown)
        uvicorn.run(application, **options)
        return
    # N processes on one socket (center.api.serving): each builds its app from these settings
    os.environ[serving.SETTINGS_ENV] = serving.settings_for_workers(settings)
    printer.line(f"{shown}, {settings.workers} workers")
    uvicorn.run(serving.WORKER_APP, factory=True, workers=settings.workers, **options)


@db_app.command("upgrade")
def db_upgrade(data: DataOpt = None, database_url: DbOpt = None) -> None:
    """Apply the Alembic migrations up to the newest revision."""
    from center.db.engine import make_engine, upgrade

    settings = _settings(data, database_url)
    settings.prepare_data_dir()
    engine = make_engine(settings.sqlalchemy_url())
    upgrade(engine)
    engine.dispose()
    printer.line("center: database is up to date")


@keys_app.command("show")
def keys_show(data: DataOpt = None, as_json: JsonOpt = False) -> None:
    """Print the root fingerprint: lowercase hex SHA-256 of the root key's SubjectPublicKeyInfo DER."""
    from center.keys import load_root_public
    from protocol.keys import jwk_from_public_key, root_fingerprint

    settings = _settings(data)
    root = load_root_public(settings.keys_dir)
    if as_json:
        printer.emit_json({"root_fingerprint": root_fingerprint(root), "root_jwk": jwk_from_public_key(root)})
    else:
        printer.line(root_fingerprint(root))


@item_app.command("add")
def item_add(
    files: Annotated[list[Path], typer.Argument(help="The content; several files make a bundle (ustar)")],
    title: Annotated[str, typer.Option("--title")],
    price: Annotated[str, typer.Option("--price", help="Whole minor units, e.g. 500 (JPY) or 499 (cents)")],
    currency: Annotated[str, typer.Option("--currency", help="ISO 4217, e.g. JPY")],
    description: Annotated[str, typer.Option("--description")] = "",
    preview: Annotated[Path | None, typer.Option("--preview", help="The seller's trial file")] = None,
    data: DataOpt = None,
    database_url: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register an item: content hash and length, previews, listed at once."""
    from center.services.catalog import NewItem, parse_price

    money = parse_price(price, currency)
    settings = _settings(data, database_url)
    item = _catalog(settings).add_item(NewItem(files, title, money, description, preview))
    if as_json:
        printer.emit_json(item)
    else:
        printer.item_detail(item)


@item_app.command("list")
def item_list(data: DataOpt = None, database_url: DbOpt = None, as_json: JsonOpt = False) -> None:
    """List the catalog."""
    catalog = _catalog(_settings(data, database_url))
    items: list[ItemSummary] = []
    cursor = None
    while True:
        page = catalog.list_items(100, cursor)
        items.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    if as_json:
        printer.emit_json([i.model_dump(mode="json") for i in items])
    else:
        printer.items_table(tuple(items))


@item_app.command("show")
def item_show(
    item_id: str, data: DataOpt = None, database_url: DbOpt = None, as_json: JsonOpt = False
) -> None:
    """Show one item with its files and previews."""
    item = _catalog(_settings(data, database_url)).get_item(item_id)
    if as_json:
        printer.emit_json(item)
    else:
        printer.item_detail(item)


@item_app.command("remove")
def item_remove(item_id: str, data: DataOpt = None, database_url: DbOpt = None) -> None:
    """Take an item off the catalog (its blobs stay for deliveries already made)."""
    _catalog(_settings(data, database_url)).remove_item(item_id)
    printer.line(f"center: removed {item_id}")


def _fail(message: str, code: int) -> int:
    text = " ".join(message.split())
    sys.stderr.write(f"center: error: {text}\n")
    return code


def _validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    if where == "data_dir" and first.get("type") == "missing":
        return "give --data DIR or set COFFER_CENTER_DATA_DIR"
    return f"{where}: {first.get('msg')}" if where else str(first.get("msg"))


def run(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="center", standalone_mode=False)
    except typer.Exit as exc:
        return int(getattr(exc, "exit_code", 0))
    except typer.Abort:
        return _fail("aborted", 130)
    except typer.TyperException as exc:
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            sys.stdout.write(ctx.get_help() + "\n")
            return 2
        format_message = getattr(exc, "format_message", None)
        return _fail(format_message() if callable(format_message) else str(exc), 2)
    except (InvalidInputError, UnsupportedMediaError, NotFoundError) as exc:
        return _fail(exc.message, 2)
    except CenterError as exc:
        return _fail(exc.message, 1)
    except ValidationError as exc:
        return _fail(_validation_message(exc), 2)
    except KeyboardInterrupt:
        return 130
    return int(result) if isinstance(result, int) else 0
