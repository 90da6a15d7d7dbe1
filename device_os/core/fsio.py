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
