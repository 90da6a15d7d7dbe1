"""A center download that drops mid-stream is resumed with Range inside the same upload to the device, and the
purchase still ends with one debit and the right bytes. The drop is real: a TCP relay between the PC and the
center closes the connection once, after a few MiB of the answer."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.terminal.conftest import Shop
from tests.terminal.test_interrupted import _big_item, _one_settled_order, _prepaid

pytestmark = [pytest.mark.swtpm, pytest.mark.integration]

CUT_AFTER = 5 * 1024 * 1024


class CuttingRelay:
    """127.0.0.1:port → the center; the first connection whose answer passes `cut_after` bytes is closed."""

    def __init__(self, target: tuple[str, int], cut_after: int) -> None:
        self.target, self.cut_after = target, cut_after
        self.cuts = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._open += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, answer: bool) -> None:
        sent = 0
        try:
            while data := source.recv(65536):
                sink.sendall(data)
                sent += len(data)
                if answer and sent > self.cut_after:
                    with self._lock:
                        if self.cuts == 0:
                            self.cuts += 1
                            break
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._server.close()
        for sock in self._open:
            sock.close()


@pytest.fixture
def relay(shop: Shop) -> Iterator[CuttingRelay]:
    made = CuttingRelay(("127.0.0.1", shop.center.port), CUT_AFTER)
    yield made
    made.close()


def test_a_dropped_download_resumes_with_range(shop: Shop, relay: CuttingRelay, tmp_path: Path) -> None:
    item_id, sha = _big_item(shop, tmp_path)
    before = _prepaid(shop)
    through = {"COFFER_CENTER": f"http://127.0.0.1:{relay.port}"}
    # the center token is stored per center URL: the relay is another URL for the same center
    token = next((shop.cli.state_dir / "centers").rglob(f"device-{shop.device_id}.token"))
    relayed = shop.cli.state_dir / "centers" / f"http_127.0.0.1_{relay.port}" / token.name
    relayed.parent.mkdir(mode=0o700, parents=True)
    relayed.write_text(token.read_text())
    relayed.chmod(0o600)

    bought = shop.cli.json("purchase", item_id, env=through)
    assert relay.cuts == 1
    assert bought["resumed_downloads"] >= 1
    assert bought["streamed_bytes"] > 48 * 1024 * 1024  # the whole stream, once: the upload never restarted
    opened = shop.cli.json("open", item_id, "-o", str(tmp_path / "out.bin"))
    assert opened["sha256"] == sha
    assert _prepaid(shop) == before - 400
    _one_settled_order(shop, item_id, before - 400)
