"""swtpm for tests: a manufactured TPM state template (once per session) and per-test simulators.

The launcher itself is `scripts/swtpm.py` (shared with the demo and the benchmark); this module adds the test
view: an instance knows its local CA, so EK certificate chains can be checked against it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from scripts.swtpm import Swtpm, SwtpmError, SwtpmTemplate, copy_state, provision_template

__all__ = ["SwtpmError", "SwtpmInstance", "SwtpmTemplate", "new_instance", "provision_template"]


class SwtpmInstance(Swtpm):
    """A running swtpm on a private copy of the template's state.

    .tcti, .state_dir, .ca_cert (root PEM), .intermediate_cert, .ca_bundle (root + intermediate PEM),
    .start(), .stop(orderly=False) (SIGTERM), .kill() (SIGKILL: a power cut), .restart(orderly=False).
    """

    def __init__(
        self, state_dir: Path, template: SwtpmTemplate, *, transport: Literal["tcp", "unix"] = "tcp"
    ) -> None:
        socket_dir = None
        if transport == "unix":
            socket_dir = state_dir.parent / "sock"
            socket_dir.mkdir(exist_ok=True)
            if len(str(socket_dir)) > 90:  # AF_UNIX path limit: fall back to a short temporary directory
                socket_dir = None
        super().__init__(state_dir, transport=transport, socket_dir=socket_dir)
        self.template = template

    @property
    def ca_cert(self) -> Path:
        return self.template.ca_cert

    @property
    def intermediate_cert(self) -> Path:
        return self.template.intermediate_cert

    @property
    def ca_bundle(self) -> Path:
        return self.template.ca_bundle


def new_instance(
    template: SwtpmTemplate, directory: Path, *, transport: Literal["tcp", "unix"] = "tcp", start: bool = True
) -> SwtpmInstance:
    """A fresh TPM (a copy of the template's state in `directory/state`), started unless `start=False`."""
    directory.mkdir(parents=True, exist_ok=True)
    state = copy_state(template, directory / "state")
    instance = SwtpmInstance(state, template, transport=transport)
    if start:
        instance.start()
    return instance
