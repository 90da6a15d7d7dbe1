"""What a hostile PC or a bad day can do, end to end with the real center and device service on swtpm:
a PC that alters the content stream or the order in transit is refused with no debit; the device killed
mid-import, restarted, and the purchase re-run → one debit and the right bytes; a device state restored from
an older copy spends nothing."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.b64 import b64url_decode, b64url_encode
from terminal_cli.center import CenterClient
from terminal_cli.device import DeviceClient
from terminal_cli.errors import ProblemError
from tests.terminal.conftest import Shop
from tests.terminal.support import PIN
from tests.terminal.test_interrupted import _big_item, _journal, _one_settled_order, _prepaid

pytestmark = [pytest.mark.swtpm, pytest.mark.integration]


def _clients(shop: Shop) -> tuple[CenterClient, DeviceClient]:
    token_file = next((shop.cli.state_dir / "centers").rglob(f"device-{shop.device_id}.token"))
    center = CenterClient(shop.center.url, device_token=token_file.read_text())
    device = DeviceClient(shop.board.url)
    device.unlock(PIN)
    return center, device


def _flipped(chunks: Iterator[bytes], at: int) -> Iterator[bytes]:
    seen = 0
    for chunk in chunks:
        if seen <= at < seen + len(chunk):
            data = bytearray(chunk)
            data[at - seen] ^= 0x01
            chunk = bytes(data)
        seen += len(chunk)
        yield chunk


def test_altered_stream_or_order_is_refused_without_a_debit(shop: Shop) -> None:
    item = next(i for i in shop.cli.json("catalog") if i["media_kind"] == "audio")
    center, device = _clients(shop)
    with center, device:
        before = device.wallet()
        order = center.create_order(item["item_id"], shop.device_id, "test-altered-stream-0001")
        for at in (10, 42 + 5, order.content_length - 1):  # header, a segment, the last tag
            with (
                center.download(order.content_url, auth=True) as response,
                pytest.raises(ProblemError) as bad,
            ):
                device.purchase(order.order, _flipped(response.iter_raw(65536), at), order.content_length)
            assert bad.value.slug in ("corrupt-content", "content-mismatch"), bad.value
            assert bad.value.code == 12
        header, payload, signature = order.order.split(".")
        claims = b64url_decode(payload).replace(b'"amount":', b'"amount":1', 1)  # a cheaper price
        forged = ".".join([header, b64url_encode(claims), signature])
        with center.download(order.content_url, auth=True) as response, pytest.raises(ProblemError) as bad:
            device.purchase(forged, response.iter_raw(65536), order.content_length)
        assert bad.value.slug == "invalid-signature"
        assert bad.value.code == 11
        after = device.wallet()
        assert after.counter == before.counter  # no commit at all
        assert after.purses == before.purses
        assert device.outbox() == []
        assert device.library() == []
        assert center.order(order.order_id).state == "held"  # the center took no money either


@pytest.mark.slow
def test_device_killed_mid_import_then_rerun(shop: Shop, tmp_path: Path) -> None:
    item_id, sha = _big_item(shop, tmp_path)
    before = _prepaid(shop)
    process = shop.cli.popen("purchase", item_id)
    journal = _journal(shop, item_id)
    deadline = time.monotonic() + 120
    while b'"order":"' not in (journal.read_bytes() if journal.exists() else b""):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.1)
    shop.board.kill()  # the board loses power mid-import (SIGKILL; the swtpm stays, as a TPM would reset)
    _, err = process.communicate(timeout=120)
    assert process.returncode in (0, 21), err  # 0 only if the import had already committed and settled
    shop.board.start()
    if process.returncode == 21:
        assert "device at" in err
        done = shop.purchase(item_id)
        assert done["continued"] is True
    assert _prepaid(shop) == before - 400
    opened = shop.cli.json("open", item_id, "-o", str(tmp_path / "out.bin"))
    assert opened["sha256"] == sha
    _one_settled_order(shop, item_id, before - 400)


def test_state_restored_from_an_older_copy_spends_nothing(shop: Shop, tmp_path: Path) -> None:
    catalog = shop.cli.json("catalog")
    shop.board.stop()
    older = tmp_path / "older-state"
    shutil.copy2(shop.board.data / "state", older)
    shop.board.start()
    shop.purchase(catalog[0]["item_id"])  # one commit later
    shop.board.stop()
    shutil.copy2(older, shop.board.data / "state")  # the SD card's older state put back
    shop.board.start()
    status = shop.cli.json("device", "status")
    assert status["tampered"] is True
    refused = shop.cli.fails(26, "purchase", catalog[1]["item_id"])
    assert "integrity" in refused.stderr or "tamper" in refused.stderr
