"""Bundles (DESIGN.md "Bundles"): several files delivered as one ustar archive, deterministic.

Entries sorted by name (UTF-8 byte order), mtime 0, uid/gid 0, uname/gname empty, mode 0644, regular files
only;
tarfile with format=USTAR_FORMAT. The same files always give the same bytes, hence the same SHA-256.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import BinaryIO

from center.errors import InvalidInputError

MEDIA_TYPE = "application/x-tar"
MAX_NAME_BYTES = 100


def member_name(path: Path) -> str:
    """The name a file gets inside a bundle: its base name, which must fit a ustar name field."""
    name = path.name
    try:
        encoded = name.encode("utf-8", errors="strict")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(f"file name {name!r} is not valid UTF-8") from exc
    if name in ("", ".", "..") or "\x00" in name or len(encoded) > MAX_NAME_BYTES:
        raise InvalidInputError(
            f"file name {name!r} cannot be a bundle member (at most {MAX_NAME_BYTES} bytes)"
        )
    return name


def sorted_members(paths: list[Path]) -> list[tuple[str, Path]]:
    """(name, path) sorted by name; two files with one base name are refused."""
    members = sorted(((member_name(p), p) for p in paths), key=lambda m: m[0].encode("utf-8"))
    names = [m[0] for m in members]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise InvalidInputError(
            f"two files are named {sorted(dupes)[0]!r}; bundle members need distinct names"
        )
    return members


def write_ustar(members: list[tuple[str, Path]], out: BinaryIO) -> None:
    """Write the deterministic ustar archive of `members` (already sorted) to `out`."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT, encoding="utf-8") as tar:
        for name, path in members:
            info = tarfile.TarInfo(name)
            info.size = path.stat().st_size
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            with open(path, "rb") as fh:
                tar.addfile(info, fh)
