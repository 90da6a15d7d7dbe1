"""Bundles: one deterministic ustar archive (DESIGN.md "Bundles")."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from center.errors import InvalidInputError
from center.media import bundle
from center.services.catalog import CatalogService
from tests.center.conftest import Media, add


def _archive(paths: list[Path]) -> bytes:
    out = io.BytesIO()
    bundle.write_ustar(bundle.sorted_members(paths), out)
    return out.getvalue()


def test_same_files_give_the_same_bytes(media: Media, tmp_path: Path) -> None:
    first = _archive([media.text, media.image, media.audio])
    copies = []
    for src in (media.audio, media.text, media.image):
        copy = tmp_path / src.name
        copy.write_bytes(src.read_bytes())
        os.utime(copy, (1_000_000, 1_000_000))
        copy.chmod(0o600)
        copies.append(copy)
    assert hashlib.sha256(_archive(copies)).digest() == hashlib.sha256(first).digest()


def test_entries_are_sorted_ustar_with_fixed_metadata(media: Media) -> None:
    data = _archive([media.text, media.image, media.audio])
    assert data[257:265] == b"ustar\x0000"
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == sorted(m.name for m in members)
        for m in members:
            assert (m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode, m.type) == (
                0,
                0,
                0,
                "",
                "",
                0o644,
                tarfile.REGTYPE,
            )
        extracted = tar.extractfile("story.md")
        assert extracted is not None
        assert extracted.read() == media.text.read_bytes()


def test_duplicate_and_overlong_names_are_refused(media: Media, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    twin = tmp_path / "sub" / media.text.name
    twin.write_bytes(b"x")
    with pytest.raises(InvalidInputError):
        bundle.sorted_members([media.text, twin])
    long_name = tmp_path / ("n" * 101)
    long_name.write_bytes(b"x")
    with pytest.raises(InvalidInputError):
        bundle.sorted_members([long_name])


def test_bundle_item_is_previewed_by_its_first_previewable_member(
    catalog: CatalogService, media: Media
) -> None:
    item_id = add(catalog, media.other, media.text, media.image, title="Bundle")
    item = catalog.get_item(item_id)
    assert item.bundle
    assert item.content_media_type == "application/x-tar"
    names = [f.name for f in item.files]
    assert names == sorted(names)
    # archive.dat (other) comes first and cannot be previewed; picture.txt (an image) is next.
    assert [p.kind for p in item.previews] == ["image"]
    assert item.content_sha256 == hashlib.sha256(_archive([media.other, media.text, media.image])).hexdigest()
