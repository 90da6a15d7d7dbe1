"""Importing a 1 GiB stream grows the service's RSS by less than 30 MB (issue 7): the item is registered at
the real center (tests/support/center.py), whose content stream the test relays to the device as it arrives
(httpx streaming both ways, as terminal_cli relays it); the peak is the service process's VmHWM (reset after a
warm-up purchase), compared with its VmRSS before."""

from __future__ import annotations

import collections
import hashlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from bench.device_import import DeviceProcess
from tests.device_purchase.process import post_purchase, ready_process
from tests.support.center import Account, RealCenter
from tests.support.swtpm import SwtpmInstance

pytestmark = [pytest.mark.swtpm, pytest.mark.integration, pytest.mark.slow]

MIB = 1024 * 1024
GIB = 1024 * MIB
LIMIT = 30 * 1000 * 1000


def _plaintext(size: int, seed: bytes) -> Iterator[bytes]:
    block = hashlib.shake_256(seed).digest(MIB)
    for i in range(0, size, MIB):
        yield i.to_bytes(8, "big") + block[8 : min(MIB, size - i)]


def _register(center: RealCenter, directory: Path, name: str, size: int) -> str:
    """An item of `size` bytes at the center (written to a file: never held in memory)."""
    path = directory / f"{name}.bin"
    with path.open("wb") as out:
        for piece in _plaintext(size, name.encode()):
            out.write(piece)
    try:
        return center.add_file(path, title=name, price=1)
    finally:
        path.unlink()


def _purchase(client: httpx.Client, device: DeviceProcess, account: Account, item: str) -> None:
    """The center's order and its content stream, relayed to the device piece by piece."""
    order = account.order(item)
    with account.center.stream("GET", order["content_url"], headers=account.headers) as download:
        assert download.status_code == 200
        r = post_purchase(client, device, order["order"], download.iter_raw(1 << 20))
    assert r.status_code == 200, r.text


def _poll_during(device: DeviceProcess, work: Callable[[], None]) -> int:
    """Run `work` while another client asks GET /v1/wallet in a loop; how many were answered 200."""
    done = threading.Event()
    answered = 0

    def poll() -> None:
        nonlocal answered
        with device.client(60) as other:
            while not done.is_set():
                if other.get("/v1/wallet", headers=device.auth()).status_code == 200:
                    answered += 1
                done.wait(0.05)

    thread = threading.Thread(target=poll)
    thread.start()
    try:
        work()
    finally:
        done.set()
        thread.join()
    return answered


def test_one_gib_import_in_constant_memory(
    swtpm: SwtpmInstance, tmp_path: Path, real_center: RealCenter, center_http: httpx.Client
) -> None:
    warm_up = _register(real_center, tmp_path, "warm-up", 16 * MIB)
    big = _register(real_center, tmp_path, "big", GIB)
    device, _, account = ready_process(swtpm.tcti, tmp_path, real_center, center_http)
    try:
        with device.client(600) as client:
            _purchase(client, device, account, warm_up)  # thread pool, buffers, imports
            rss = device.status("VmRSS")
            device.reset_peak()
            answered = _poll_during(device, lambda: _purchase(client, device, account, big))
            peak = device.status("VmHWM")
            assert answered > 0  # the event loop kept serving other requests during the upload
            items = {
                i["item_id"]: i for i in client.get("/v1/library", headers=device.auth()).json()["items"]
            }
            assert items[big]["length"] == GIB
            tail = client.get(f"/v1/library/{big}/content", headers={**device.auth(), "Range": "bytes=-100"})
            last = collections.deque(_plaintext(GIB, b"big"), maxlen=1)[0]
            assert (tail.status_code, tail.content) == (206, last[-100:])
            assert client.delete(f"/v1/library/{big}", headers=device.auth()).status_code == 204
        print(f"\n1 GiB import: RSS before {rss / MIB:.1f} MiB, peak {peak / MIB:.1f} MiB")
        assert peak - rss < LIMIT, (rss, peak)
    finally:
        device.stop()
