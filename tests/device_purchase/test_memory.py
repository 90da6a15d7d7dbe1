"""Importing a 1 GiB stream grows the service's RSS by less than 30 MB (issue 7): the client generates the
stream on the fly (protocol.stream.encrypt_iter over a generator) and uploads it with httpx streaming; the
peak is the service process's VmHWM (reset after a warm-up purchase), compared with its VmRSS before."""

from __future__ import annotations

import collections
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from bench.device_import import DeviceProcess
from protocol import stream
from tests.device.center import TestCenter
from tests.device_purchase.process import post_purchase, ready_process
from tests.device_purchase.shop import signed_order
from tests.support.swtpm import SwtpmInstance

pytestmark = [pytest.mark.swtpm, pytest.mark.integration, pytest.mark.slow]

MIB = 1024 * 1024
GIB = 1024 * MIB
LIMIT = 30 * 1000 * 1000


def _plaintext(size: int, seed: bytes) -> Iterator[bytes]:
    block = hashlib.shake_256(seed).digest(MIB)
    for i in range(0, size, MIB):
        yield i.to_bytes(8, "big") + block[8 : min(MIB, size - i)]


def _digest(size: int, seed: bytes) -> str:
    h = hashlib.sha256()
    for piece in _plaintext(size, seed):
        h.update(piece)
    return h.hexdigest()


def _purchase(
    client: httpx.Client,
    device: DeviceProcess,
    center: TestCenter,
    kem: ec.EllipticCurvePublicKey,
    item: str,
    size: int,
) -> None:
    seed = item.encode()
    ke = os.urandom(32)
    order = signed_order(
        center,
        device.device_id,
        kem,
        ke=ke,
        content_sha256=_digest(size, seed),
        content_length=size,
        item_id=item,
        segment_size=65536,
        price=1,
    )
    r = post_purchase(client, device, order, stream.encrypt_iter(_plaintext(size, seed), ke))
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


def test_one_gib_import_in_constant_memory(swtpm: SwtpmInstance, tmp_path: Path) -> None:
    center = TestCenter()
    device, kem = ready_process(swtpm.tcti, tmp_path, center)
    try:
        with device.client(600) as client:
            _purchase(client, device, center, kem, "warm-up", 16 * MIB)  # thread pool, buffers, imports
            rss = device.status("VmRSS")
            device.reset_peak()
            answered = _poll_during(device, lambda: _purchase(client, device, center, kem, "big", GIB))
            peak = device.status("VmHWM")
            assert answered > 0  # the event loop kept serving other requests during the upload
            items = {
                i["item_id"]: i for i in client.get("/v1/library", headers=device.auth()).json()["items"]
            }
            assert items["big"]["length"] == GIB
            tail = client.get("/v1/library/big/content", headers={**device.auth(), "Range": "bytes=-100"})
            last = collections.deque(_plaintext(GIB, b"big"), maxlen=1)[0]
            assert (tail.status_code, tail.content) == (206, last[-100:])
            assert client.delete("/v1/library/big", headers=device.auth()).status_code == 204
        print(f"\n1 GiB import: RSS before {rss / MIB:.1f} MiB, peak {peak / MIB:.1f} MiB")
        assert peak - rss < LIMIT, (rss, peak)
    finally:
        device.stop()
