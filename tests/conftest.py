"""Root fixtures: real swtpm simulators (never a fake TPM) and generic helpers.

- `swtpm_template` (session): one `swtpm_setup --tpm2 --create-ek-cert --create-platform-cert --ecc` with a
  private swtpm_localca (~1 s); every TPM below is a copy of that state, so all share the EK and its local CA.
- `swtpm` (function): a fresh TPM on 127.0.0.1 (free port P, control P+1); `.tcti`, `.state_dir`, `.ca_cert`,
  `.ca_bundle`, `.stop(orderly=False)`, `.kill()`, `.start()`, `.restart()`. Killed at teardown.
- `swtpm_factory` (function): `swtpm_factory(transport="tcp"|"unix", start=True)` makes more fresh TPMs
  (e.g. one per lockout test, since dictionary-attack lockout is global to a TPM).

Hypothesis profiles: `ci` has no deadline (a shared CI machine's timing says nothing about the code) and
prints the blob to reproduce a failure; it is loaded when `CI` is set, or with `--hypothesis-profile ci`.

Failure reports: on CPython 3.11 an exception raised by a signal handler (pytest-timeout's `Failed: Timeout`,
KeyboardInterrupt) can carry a traceback entry without a line number (cpython gh-107901: the back jump of
some loops has none); pytest's report then fails with INTERNALERROR and the failure is lost.
`pytest_runtest_makereport` below first gives such entries the line their instruction belongs to.
"""

from __future__ import annotations

import dis
import os
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from types import TracebackType
from typing import Literal

import pytest
from hypothesis import settings

from tests.support.swtpm import SwtpmInstance, SwtpmTemplate, new_instance, provision_template

SwtpmFactory = Callable[..., SwtpmInstance]

settings.register_profile("ci", deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def swtpm_template(tmp_path_factory: pytest.TempPathFactory) -> SwtpmTemplate:
    return provision_template(tmp_path_factory.mktemp("swtpm-template"))


@pytest.fixture
def swtpm_factory(swtpm_template: SwtpmTemplate, tmp_path: Path) -> Iterator[SwtpmFactory]:
    made: list[SwtpmInstance] = []

    def make(transport: Literal["tcp", "unix"] = "tcp", start: bool = True) -> SwtpmInstance:
        instance = new_instance(
            swtpm_template, tmp_path / f"tpm{len(made)}", transport=transport, start=start
        )
        made.append(instance)
        return instance

    yield make
    for instance in made:
        instance.kill()


@pytest.fixture
def swtpm(swtpm_factory: SwtpmFactory) -> SwtpmInstance:
    return swtpm_factory()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    if call.excinfo is not None and _give_line_numbers(call.excinfo.value):
        call.excinfo = pytest.ExceptionInfo.from_exception(call.excinfo.value)
    return (yield)


def _give_line_numbers(exc: BaseException, seen: set[int] | None = None) -> bool:
    """Rebuild the tracebacks of `exc` and of its chained exceptions that have entries without a line number
    (True if any was): such an entry gets the line of the last line start at or before its instruction."""
    seen = set() if seen is None else seen
    if id(exc) in seen:
        return False
    seen.add(id(exc))
    entries: list[TracebackType] = []
    tb = exc.__traceback__
    while tb is not None:
        entries.append(tb)
        tb = tb.tb_next
    changed = any(entry.tb_lineno is None for entry in entries)
    if changed:
        rebuilt: TracebackType | None = None
        for entry in reversed(entries):
            line = entry.tb_lineno if entry.tb_lineno is not None else _line_of(entry)
            rebuilt = TracebackType(rebuilt, entry.tb_frame, entry.tb_lasti, line)
        exc.__traceback__ = rebuilt
    for chained in (exc.__cause__, exc.__context__):
        if chained is not None and _give_line_numbers(chained, seen):
            changed = True
    return changed


def _line_of(entry: TracebackType) -> int:
    code = entry.tb_frame.f_code
    line = code.co_firstlineno
    for offset, start in dis.findlinestarts(code):
        if offset > entry.tb_lasti:
            break
        if start is not None:
            line = start
    return line
