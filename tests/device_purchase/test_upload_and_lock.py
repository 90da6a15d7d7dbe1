"""A request in progress keeps the device awake; a lock during an upload aborts it cleanly (issue 12 #4).

The idle timer is the service's `check_idle` (what the background task calls), on the core's fake clock: the
test moves the clock and calls it, so nothing depends on wall-clock time."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from device_os.api.service import DeviceService
from device_os.core.device import Phase
from tests.device_api.live import PIN, LiveDevice
from tests.device_purchase.shop import Shop

pytestmark = [pytest.mark.swtpm, pytest.mark.integration]
AUTO_LOCK = 5  # seconds, on the fake clock
KIB = 1024
WAIT = 60.0  # a guard against a hang, never a timing assertion


@pytest.fixture
def quick_shop(make_shop: Callable[..., Shop]) -> Shop:
    return make_shop(auto_lock_seconds=AUTO_LOCK)


def _service(live: LiveDevice) -> DeviceService:
    service: DeviceService = live.server.config.app.state.service
    return service


class PausedUpload:
    """POST /v1/purchases from a thread, its body paused halfway until `resume()`."""

    def __init__(self, shop: Shop, order: str, body: bytes) -> None:
        self.halfway, self._resume = threading.Event(), threading.Event()
        self.response: httpx.Response | BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(shop, order, body))
        self._thread.start()
        assert self.halfway.wait(WAIT)
        # Ordering: the device is staging this upload (its temp blob exists) before the test goes on.
        content = shop.live.device.content
        deadline = time.monotonic() + WAIT
        while not any(name.endswith(".tmp") for name in content.listing()):
            assert time.monotonic() < deadline, "the upload never reached the device's content store"
            time.sleep(0.01)

    def _body(self, body: bytes) -> Iterator[bytes]:
        piece = 256 * KIB
        for i in range(0, len(body), piece):
            if i >= len(body) // 2 and not self.halfway.is_set():
                self.halfway.set()
                self._resume.wait(WAIT)
            yield body[i : i + piece]

    def _run(self, shop: Shop, order: str, body: bytes) -> None:
        headers: dict[str, Any] = {
            **shop.headers,
            "Coffer-Order": order,
            "Content-Type": "application/octet-stream",
        }
        try:
            with httpx.Client(base_url=shop.live.url, timeout=WAIT) as client:
                self.response = client.post("/v1/purchases", content=self._body(body), headers=headers)
        except BaseException as exc:  # reported to the test
            self.response = exc

    def finish(self) -> httpx.Response | BaseException | None:
        self._resume.set()
        self._thread.join(WAIT)
        return self.response


def test_an_upload_longer_than_the_auto_lock_commits(quick_shop: Shop) -> None:
    shop, live = quick_shop, quick_shop.live
    service = _service(live)
    order, body = shop.order("film", os.urandom(4 * KIB * KIB))
    upload = PausedUpload(shop, order, body)
    live.clock.advance(AUTO_LOCK * 10)  # "idle" far past the auto-lock, but a request is in progress
    assert service.check_idle() is False
    assert live.device.phase() is Phase.UNLOCKED
    r = upload.finish()
    assert isinstance(r, httpx.Response), r
    assert r.status_code == 200, r.text
    assert shop.item("film") in {item["item_id"] for item in shop.get("/v1/library").json()["items"]}
    # The timer runs again from the end of the last request.
    live.clock.advance(AUTO_LOCK - 1)
    assert service.check_idle() is False
    live.clock.advance(2)
    assert service.check_idle() is True
    assert live.device.phase() is Phase.LOCKED


def test_a_lock_during_an_upload_aborts_it_cleanly(quick_shop: Shop) -> None:
    shop, live = quick_shop, quick_shop.live
    order, body = shop.order("film", os.urandom(4 * KIB * KIB))
    before = shop.snapshot()
    upload = PausedUpload(shop, order, body)
    locked = live.client.post("/v1/lock", headers=shop.headers)  # answered while the upload is held
    assert locked.status_code == 204, locked.text
    r = upload.finish()
    if isinstance(r, httpx.Response):  # (the server may also just cut the connection mid-body)
        assert r.status_code == 403, r.text
        assert r.json()["type"] == "urn:coffer:problem:device-locked"
    assert shop.snapshot() == before  # no commit, no blob, no temp file
    token = live.unlock()
    assert shop.item("film") not in {
        i["item_id"] for i in live.client.get("/v1/library", headers=_auth(token)).json()["items"]
    }


def test_a_lock_aborts_an_upload_the_pc_holds_back(quick_shop: Shop) -> None:
    """Issue 12 #9: the lock stops the staging at once, while the PC still holds the rest of the body back:
    the temp blob (and the worker holding the DEK's stream cipher) is gone before another byte arrives."""
    shop, live = quick_shop, quick_shop.live
    order, body = shop.order("film", os.urandom(4 * KIB * KIB))
    before = shop.snapshot()
    upload = PausedUpload(shop, order, body)
    try:
        assert live.client.post("/v1/lock", headers=shop.headers).status_code == 204
        content = live.device.content
        deadline = time.monotonic() + WAIT / 3  # a guard against waiting for ever, not a timing assertion
        while any(name.endswith(".tmp") for name in content.listing()):
            assert time.monotonic() < deadline, "the staging went on after the lock, waiting for the PC"
            time.sleep(0.01)
    finally:
        r = upload.finish()
    if isinstance(r, httpx.Response):  # (the server may also just cut the connection mid-body)
        assert r.status_code == 403, r.text
        assert r.json()["type"] == "urn:coffer:problem:device-locked"
    assert shop.snapshot() == before


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_lock_cuts_an_open_content_stream_and_leaves_no_secret_in_the_service(quick_shop: Shop) -> None:
    """Issue 12 #9 over HTTP: a download in progress stops at the next segment once the device locks (the
    client gets a cut response, far short of the item); nothing the service holds reaches the DEK or PIN."""
    from tests.device.test_lock import secrets_reachable

    shop, live = quick_shop, quick_shop.live
    content = os.urandom(32 * KIB * KIB)  # far more than the socket buffers between the two ends
    shop.buy("film", content)
    session = live.device._session
    assert session is not None
    dek = session.dek
    sizes: list[int] = []
    with (
        httpx.Client(base_url=live.url, timeout=WAIT) as client,
        client.stream("GET", shop.content_path("film"), headers=shop.headers) as r,
    ):
        assert r.status_code == 200
        pieces = r.iter_raw()
        sizes.append(len(next(pieces)))
        assert live.client.post("/v1/lock", headers=shop.headers).status_code == 204
        with pytest.raises(httpx.HTTPError):  # the body ends before its Content-Length
            _drain(pieces, sizes)
    assert 0 < sum(sizes) < len(content)
    assert secrets_reachable([_service(live)], PIN.encode(), dek) == []


def _drain(pieces: Iterator[bytes], sizes: list[int]) -> None:
    for piece in pieces:
        sizes.append(len(piece))
