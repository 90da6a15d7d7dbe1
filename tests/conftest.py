"""Root fixtures: real swtpm simulators (never a fake TPM) and generic helpers.

- `swtpm_template` (session): one `swtpm_setup --tpm2 --create-ek-cert --create-platform-cert --ecc` with a
  private swtpm_localca (~1 s); every TPM below is a copy of that state, so all share the EK and its local CA.
- `swtpm` (function): a fresh TPM on 127.0.0.1 (free port P, control P+1); `.tcti`, `.state_dir`, `.ca_cert`,
  `.ca_bundle`, `.stop(orderly=False)`, `.kill()`, `.start()`, `.restart()`. Killed at teardown.
- `swtpm_factory` (function): `swtpm_factory(transport="tcp"|"unix", start=True)` makes more fresh TPMs
  (e.g. one per lockout test, since dictionary-attack lockout is global to a TPM).

Hypothesis profiles: `ci` has no deadline (a shared CI machine's timing says nothing about the code) and
prints the blob to reproduce a failure; it is loaded when `CI` is set, or with `--hypothesis-profile ci`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
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
