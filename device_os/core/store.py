"""The commit protocol and start-up recovery of the state (DESIGN.md "Device state and crash safety").

Commit (one at a time, under `StateStore.commit_lock`), from committed counter c:
    1. write `state.next` (header counter c+1), fsync it, fsync the directory
    2. TPM NV_Increment (the counter becomes c+1: the commit point), then NV_Read: anything but c+1 means
       another program moved the counter (tamper, reported in `tamper`)
    3. rename `state.next` to `state`, fsync the directory
Start (headers only, TPM counter = c):
    `state.next` at c -> rename it to `state`; any other header (c+1, unreadable, anything else) -> delete it;
    then `state` at c -> fine; `state` missing -> no state; any other counter -> mismatch (the device layer
    decides between "not set up" and "tamper").

The `Counter` is the TPM NV counter in the product; a fake exists only for unit tests of this module.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from device_os.core import fsio
from device_os.core.faults import NO_FAULTS, FaultHook
from device_os.core.statedoc import HEADER_LENGTH, parse_header
from device_os.errors import Tampered, Unavailable

STATE = "state"
STATE_NEXT = "state.next"


class Counter(Protocol):
    """A monotonic counter that survives power cuts: the TPM NV counter (never ORDERLY)."""

    def read(self) -> int: ...

    def increment(self) -> int:
        """Increment and return the new value."""
        ...


@dataclass(frozen=True)
class Recovery:
    """What start-up recovery found, from the headers alone."""

    tpm_counter: int
    state_counter: int | None  # header of `state` after recovery; None when absent or unreadable
    state_present: bool
    rolled_forward: bool  # `state.next` at c was renamed to `state`
    discarded_next: bool  # `state.next` was deleted

    @property
    def consistent(self) -> bool:
        return self.state_present and self.state_counter == self.tpm_counter


class StateStore:
    """The `state` file anchored to a Counter. `commit()` is the only writer."""

    def __init__(self, directory: Path, counter: Counter, faults: FaultHook = NO_FAULTS) -> None:
        self.directory = directory
        self.state_path = directory / STATE
        self.next_path = directory / STATE_NEXT
        self._counter_source = counter
        self._faults = faults
        self.commit_lock = threading.RLock()
        self._committed: int | None = None  # the counter of `state` == the TPM counter, once consistent
        self._broken: str | None = None
        self._tpm_counter = -1  # unknown until recover()
        #: Why the store saw tamper in-process (the counter moved under a commit); None after recover().
        self.tamper: str | None = None

    # -- recovery -----------------------------------------------------------------------------------------
    def recover(self) -> Recovery:
        """Finish or discard an interrupted commit by headers; read the TPM counter once."""
        with self.commit_lock:
            tpm = self._counter_source.read()
            rolled = discarded = False
            next_counter = parse_header(fsio.read_prefix(self.next_path, HEADER_LENGTH))
            if self.next_path.exists():
                if next_counter == tpm:
                    os.replace(self.next_path, self.state_path)
                    rolled = True
                else:
                    self.next_path.unlink()
                    discarded = True
                fsio.fsync_dir(self.directory)
            raw = fsio.read_prefix(self.state_path, HEADER_LENGTH)
            state_counter = parse_header(raw)
            report = Recovery(
                tpm_counter=tpm,
                state_counter=state_counter,
                state_present=raw is not None,
                rolled_forward=rolled,
                discarded_next=discarded,
            )
            self._committed = tpm if report.consistent else None
            self._broken = None
            self.tamper = None
            self._tpm_counter = tpm
            return report

    @property
    def interrupted(self) -> bool:
        """A commit was cut at or after the counter increment; only `recover()` can tell how it ended."""
        return self._broken is not None

    @property
    def tpm_counter(self) -> int:
        """The TPM counter as last read or incremented by this store."""
        return self._tpm_counter

    @property
    def counter(self) -> int:
        """The committed counter c (== the TPM counter); raises unless the store is consistent."""
        if self._broken is not None:
            raise Unavailable(self._broken)
        if self._committed is None:
            raise Tampered("state does not match the TPM counter")
        return self._committed

    def read(self) -> bytes:
        """The committed document's bytes."""
        with self.commit_lock:
            self.counter  # noqa: B018  (raises unless consistent)
            return self.state_path.read_bytes()

    # -- commit -------------------------------------------------------------------------------------------
    def commit(
        self,
        build: Callable[[int], bytes],
        *,
        first: bool = False,
        before_increment: Callable[[], object] | None = None,
    ) -> int:
        """Commit the document `build(c + 1)` returns; returns c + 1 once durable.

        `build` runs under the lock and may raise to refuse (nothing is written then). `first=True` allows the
        very first commit of a device (setup), when no `state` exists yet and the TPM counter is c.
        `before_increment` runs once `state.next` is durable and before the NV_Increment (the commit point):
        what the new state references must be durable by then (a purchase waits there for its blob). If it
        raises, `state.next` is removed and nothing is committed.
        """
        with self.commit_lock:
            if self._broken is not None:
                raise Unavailable(self._broken)
            if self._tpm_counter < 0:
                raise Unavailable("recover() has not run")
            if first:
                if self.state_path.exists() or self._committed is not None:
                    raise Tampered("a first commit over an existing state")
                current = self._tpm_counter
            else:
                current = self.counter
            new = current + 1
            document = build(new)
            if parse_header(document) != new:
                raise ValueError("build() must return a document whose header holds the new counter")
            try:
                with fsio.full_disk_refused():
                    fsio.write_file(self.next_path, document, fsync=False)
                    self._faults("after-write-next")
                    fd = os.open(self.next_path, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                    fsio.fsync_dir(self.directory)
                    if before_increment is not None:
                        before_increment()
            except BaseException:
                fsio.remove_file(self.next_path)
                raise
            self._faults("after-fsync-next")
            try:
                self._counter_source.increment()
                # Read back: the increment's own answer is the adapter's cached value + 1, which cannot show
                # another program moving the counter.
                value = self._counter_source.read()
            except BaseException as exc:
                # The increment may or may not have happened: only recovery (reading the counter) can tell.
                self._broken = f"commit interrupted at the counter increment: {type(exc).__name__}"
                self._committed = None
                raise Unavailable(self._broken) from exc
            self._tpm_counter = value
            if value != new:
                self._committed = None
                self.tamper = f"the TPM counter moved to {value} under a commit, expected {new}"
                raise Tampered(self.tamper)
            self._faults("after-nv-increment")
            try:
                os.replace(self.next_path, self.state_path)
                self._faults("after-rename")
                fsio.fsync_dir(self.directory)
            except BaseException as exc:
                self._broken = f"commit interrupted after the increment: {type(exc).__name__}"
                self._committed = None
                raise Unavailable(self._broken) from exc
            self._faults("after-dir-fsync")
            self._committed = new
            return new
