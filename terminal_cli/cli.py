"""`terminal_cli`: the Typer shell. Each command parses, calls the clients, and returns a value for the one
printer (render.py); errors become one line on stderr and the exit code of their class (errors.py)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError

from terminal_cli import render
from terminal_cli.config import Paths, load_settings
from terminal_cli.errors import NAMED_FAILURES, TerminalError
from terminal_cli.session import Session

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CODES = "\n".join(
    [
        "Exit codes: 0 success; 1 unexpected; 2 bad input; other problems from the center or the device",
        "end with the code of their type in protocol/problems.py (4 not found, 5 authentication, 7 wrong",
        "device state, 8 refused for safety, 9 money, 10 conflict, 11 untrusted message, 12 corrupt content,",
        "13 unavailable); the named failures have their own:",
        *(f"  {code:>3}  {name:<19} {text}" for code, name, text in NAMED_FAILURES),
        "Full table: docs/terminal.md.",
    ]
)

app = typer.Typer(
    name="terminal_cli",
    help="Coffer on your PC: find the board, set it up, enroll it, browse and buy content, open it.\n\n"
    + "\b\n"  # click: keep the table's lines as they are
    + EXIT_CODES,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
device_app = typer.Typer(
    help="Set up, unlock, lock the board, change its PIN, show its status.", no_args_is_help=True
)
app.add_typer(device_app, name="device")


@dataclass
class State:
    session: Session
    as_json: bool


@app.callback()
def main_options(
    center: Annotated[
        str | None,
        typer.Option("--center", help="Center URL (https://, or http:// on loopback); env COFFER_CENTER"),
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="Device URL, skipping USB discovery; env COFFER_DEVICE")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON")] = False,
) -> None:
    """Global options; the config file is `terminal.toml` in the platform's config directory."""
    try:
        settings = load_settings(Paths.from_platform(), center=center, device=device)
    except TerminalError as exc:
        render.error(exc)
        raise typer.Exit(exc.code) from None
    _current.append(State(Session(settings), as_json))


_current: list[State] = []  # the invocation's state, set by the callback (one invocation per process)


def state() -> State:
    if not _current:
        raise RuntimeError("terminal_cli commands run through `app`, whose callback builds their state")
    return _current[-1]


def session() -> Session:
    return state().session


def command(group: typer.Typer, name: str | None = None, **kwargs: Any) -> Callable[[F], F]:
    """Register a command: its return value goes to the printer, a TerminalError to one line + exit code."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def run(*args: Any, **kw: Any) -> None:
            current = state()
            try:
                value = fn(*args, **kw)
            except TerminalError as exc:
                render.error(exc)
                raise typer.Exit(exc.code) from None
            except ValidationError as exc:  # a 2xx answer that is not the API (another server, a hostile PC)
                what = f"{exc.title}: {exc.error_count()} error(s)"
                bad = TerminalError(f"an answer is not what the API defines ({what})")
                render.error(bad)
                raise typer.Exit(bad.code) from None
            except KeyboardInterrupt:
                render.err.print(
                    "interrupted: run the same command again (or `terminal_cli sync`) to continue"
                )
                raise typer.Exit(130) from None
            finally:
                current.session.close()
            render.show(value, as_json=current.as_json)

        group.command(name, **kwargs)(run)
        return fn

    return decorate


def main() -> None:
    from terminal_cli import commands  # noqa: F401  (registers the commands on `app`)

    app()
