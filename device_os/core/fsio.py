"""Durable file primitives: every write is fsynced, every rename is followed by a directory fsync."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from device_os.errors import StorageFull

_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


@contextlib.contextmanager
def full_disk_refused() -> Iterator[None]:
    """A full data partition (ENOSPC, EDQUOT) becomes `StorageFull`; any other OSError passes unchanged."""
    try:
        yield
    except OSError as exc:
        if exc.errno in _FULL:
            raise StorageFull("the device's storage is full: delete an item from the library") from exc
        raise


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing `length` bytes of `fd` from `offset` to the disk now, without waiting
    (Linux: POSIX_FADV_DONTNEED begins writeback of the range's dirty pages, WB_SYNC_NONE, then drops its
    clean ones from the page cache). A hint only: nothing becomes durable before the fsync that follows, and
    where the call is missing or refused nothing changes but the time that fsync takes."""
    advise = getattr(os, "posix_fadvise", None)
    if advise is None:  # pragma: no cover - the device runs on Linux
        return
    with contextlib.suppress(OSError):
        advise(fd, offset, length, os.POSIX_FADV_DONTNEED)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: Path, data: bytes, *, fsync: bool = True, mode: int = 0o600) -> None:
    """Create or truncate `path`, write all of `data`, fsync the file (not the directory)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def write_durable(path: Path, data: bytes) -> None:
    """Replace `path` atomically and durably: temp file, fsync, rename, directory fsync."""
    tmp = path.with_name(path.name + ".tmp")
    write_file(tmp, data)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def remove_tree(path: Path) -> None:
    """Delete a directory tree (if present) and make the deletion durable."""
    if path.exists():
        shutil.rmtree(path)
        fsync_dir(path.parent)


def remove_file(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def read_prefix(path: Path, length: int) -> bytes | None:
    """The first `length` bytes of `path` (fewer if it is shorter), or None when it does not exist."""
    try:
        with path.open("rb") as fh:
            return fh.read(length)
    except FileNotFoundError:
        return None
