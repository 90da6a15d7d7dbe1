"""Issue 12, finding 10 over HTTP: a missing blob, a content key that is not 32 bytes, a blob whose length is
not the library's, and a full disk each end in a problem (never a 500) with no state change."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from protocol import stream
from tests.device_api.live import FakeClock, LiveDevice, make_settings
from tests.device_purchase.shop import Shop, open_shop
from tests.support.center import RealCenter
from tests.support.swtpm import SwtpmInstance

pytestmark = [pytest.mark.swtpm, pytest.mark.integration]


def _problem(r, slug: str) -> None:  # type: ignore[no-untyped-def]
    assert r.status_code != 500, r.text
    assert 400 <= r.status_code < 600, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == f"urn:coffer:problem:{slug}", r.text


def _blob(shop: Shop, item: str) -> Path:
    entry = shop.live.device.wallet().body.library[shop.item(item)]
    return shop.live.device.content.path(entry.blob)


@pytest.mark.parametrize("mode", ["now", "deferred"])
def test_missing_blob_is_a_problem(shop: Shop, mode: str) -> None:
    shop.buy("song", os.urandom(30_000), mode=mode)
    _blob(shop, "song").unlink()  # the SD card lost it
    before = shop.snapshot()
    _problem(shop.get(shop.content_path("song")), "corrupt-content")
    _problem(shop.get(shop.content_path("song"), Range="bytes=10-20"), "corrupt-content")
    assert shop.snapshot() == before


def test_content_key_that_is_not_32_bytes_is_refused(shop: Shop) -> None:
    """The center always wraps a 32-byte Ke: the forger wraps other sizes, signed with the center's key."""
    content = os.urandom(10_000)
    body = stream.encrypt(content, os.urandom(32))
    before = shop.snapshot()
    for size in (16, 31, 33, 64):
        order = shop.forger.order(
            shop.device_id,
            shop.kem,
            ke=os.urandom(size),
            content_sha256=hashlib.sha256(content).hexdigest(),
            content_length=len(content),
        )
        _problem(shop.post(order, body), "invalid-signature")
        assert shop.snapshot() == before


def test_blob_of_another_length_is_corrupt_content(shop: Shop) -> None:
    """Two blobs swapped on the SD card (both under the DEK): the library's length no longer matches."""
    long, short = os.urandom(100_000), os.urandom(40_000)
    shop.buy("long", long)
    shop.buy("short", short)
    a, b = _blob(shop, "long"), _blob(shop, "short")
    tmp = a.with_suffix(".swap")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)
    before = shop.snapshot()
    _problem(shop.get(shop.content_path("long"), Range="bytes=60000-70000"), "corrupt-content")
    _problem(shop.get(shop.content_path("long")), "corrupt-content")
    _problem(shop.get(shop.content_path("short")), "corrupt-content")
    _problem(shop.get(shop.content_path("short"), Range="bytes=0-10"), "corrupt-content")
    assert shop.snapshot() == before


# -- a full disk: the data directory on a small tmpfs mounted by the test ---------------------------------
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 6 MiB tmpfs (we run as root in the test VM); unmounted at teardown."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m,mode=0700", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def full_shop(
    small_disk: Path, swtpm: SwtpmInstance, real_center: RealCenter, center_http: httpx.Client
) -> Iterator[Shop]:
    live = LiveDevice(make_settings(small_disk / "data", swtpm.tcti), FakeClock()).start()
    try:
        live.setup()
        yield open_shop(live, live.unlock(), real_center, center_http)
    finally:
        live.stop()


def _fill(directory: Path, leave: int) -> Path:
    """A filler file taking all free space but about `leave` bytes."""
    filler = directory / "filler"
    free = os.statvfs(directory).f_bavail * os.statvfs(directory).f_frsize
    with filler.open("wb") as fh, contextlib.suppress(OSError):
        fh.write(b"\0" * max(0, free - leave))
    return filler


def test_full_disk_is_a_problem_with_no_state_change(full_shop: Shop) -> None:
    shop = full_shop
    data = shop.live.settings.data_dir
    shop.buy("small", os.urandom(20_000))
    shop.buy("later", os.urandom(200_000), mode="deferred")
    before = shop.snapshot()
    # a purchase larger than the free space: the blob write fails (ENOSPC)
    order, body = shop.order("huge", os.urandom(8 * 1024 * 1024))
    _problem(shop.post(order, body), "service-unavailable")
    assert shop.snapshot() == before
    # no room even for `state.next`: a credit and a deferred item's first open (its re-encrypted blob)
    credit = shop.credit(1000)  # redeemed at the center before the disk fills
    filler = _fill(data, leave=0)
    r = shop.live.client.post("/v1/credits", json={"credit": credit}, headers=shop.headers)
    _problem(r, "service-unavailable")
    _problem(shop.get(shop.content_path("later")), "service-unavailable")
    order, body = shop.order("tiny", os.urandom(100))
    _problem(shop.post(order, body), "service-unavailable")
    assert shop.snapshot() == before
    # room again: everything works, nothing was half-applied
    filler.unlink()
    assert shop.get(shop.content_path("later")).status_code == 200
    assert shop.post(order, body).json()["counter"] == before.counter + 2  # the same order, now accepted
