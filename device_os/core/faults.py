"""The fault hook: TEST-ONLY. Inert unless a test arms it; nothing the product reads (no setting, no
environment variable, no config file line) can arm it.

A `FaultHook("STEP")` or `FaultHook("STEP@N")` makes the process SIGKILL itself the N-th time (default 1st)
execution passes the named step. The power-cut campaign (tests/device/) uses it to cut power exactly at each
step of the commit protocol and of the content store; nothing else should. Two seams, both used only by tests:
`Device(..., faults=FaultHook(spec))`, and `install(hook)` before the device opens (a test launcher in a child
process: tests/support/faultsite/sitecustomize.py for `python -m device_os serve`).
"""

from __future__ import annotations

import os
import signal

#: Steps of the state commit protocol (DESIGN.md "Device state and crash safety"), in order.
COMMIT_STEPS = (
    "after-write-next",  # state.next written, not yet fsynced
    "after-fsync-next",  # state.next and the directory fsynced; NV counter not yet incremented
    "after-nv-increment",  # TPM counter = c+1; state.next not yet renamed
    "after-rename",  # state.next renamed to state; directory not yet fsynced
    "after-dir-fsync",  # commit durable; the caller has not yet answered
)
#: Steps of the content store (a blob is written before the commit that references it).
CONTENT_STEPS = (
    "content-after-write",  # ciphertext written to the temp file, not fsynced
    "content-after-fsync",  # temp file complete and fsynced, not yet renamed
    "content-after-rename",  # blob in place, not yet referenced by any commit
)
#: Steps of setup and PIN change (setup.next/, pin.next/ swaps).
KEY_STEPS = (
    "setup-after-files",  # setup.next/ complete, first commit not yet started
    "setup-after-commit",  # first commit done, setup.next/ not yet swapped in
    "pin-after-files",  # pin.next/ written, completion marker not yet written
    "pin-after-marker",  # pin.next/ complete, not yet swapped
    "pin-after-move-old",  # keys/ moved to keys.old/, pin.next/ not yet moved in
    "pin-after-move-new",  # pin.next/ is keys/, keys.old/ not yet deleted
)
STEPS = COMMIT_STEPS + CONTENT_STEPS + KEY_STEPS


class FaultHook:
    """Callable at each named step; kills the process with SIGKILL at the configured one."""

    def __init__(self, spec: str | None = None) -> None:
        self._step: str | None = None
        self._nth = 1
        self._hits = 0
        if spec:
            step, _, nth = spec.partition("@")
            if step not in STEPS:
                raise ValueError(f"unknown fault step {step!r}")
            self._step = step
            self._nth = int(nth) if nth else 1
            if self._nth < 1:
                raise ValueError("fault occurrence must be >= 1")

    @property
    def armed(self) -> bool:
        return self._step is not None

    def __call__(self, step: str) -> None:
        if self._step is None or step != self._step:
            return
        self._hits += 1
        if self._hits == self._nth:
            os.kill(os.getpid(), signal.SIGKILL)


NO_FAULTS = FaultHook()
_installed = NO_FAULTS


def install(hook: FaultHook) -> None:
    """TEST-ONLY: the hook a `Device` built without an explicit one uses (set before it opens)."""
    global _installed
    _installed = hook


def installed() -> FaultHook:
    return _installed
