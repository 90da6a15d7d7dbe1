"""The whole product across a simulated network (DESIGN.md "USB link"; issue 13): three network namespaces.

    center ──eth0── pc ──usb1═══usb0── board
    (center serve,   (terminal_cli, finds     (device_os serve bound to usb0's address only,
     HTTPS, its own   the board by USB         its TPM a swtpm on a unix socket)
     test CA)         discovery: umockdev)

The PC reaches both; the center cannot reach the board (the PC does not forward). terminal_cli runs in `pc`
with no --device: it finds the board the way it does on a real PC (a recorded udev tree whose `net` interface
is the PC's real end of the link, so the address comes from the kernel), and it reaches the center over
https:// verified against the test's CA. setup → enroll (attested against swtpm's EK CA) → redeem → purchase →
open → sync.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.tls import server_certificate
from scripts.usblink import Network
from tests.terminal.support import PIN, ROOT, CenterServer, Cli, stop
from tests.terminal.test_discovery import _usb_board

pytestmark = [pytest.mark.integration, pytest.mark.swtpm]

CENTER_PORT = 8443
DEVICE_PORT = 8470


def _reachable(net: Network, namespace: str, host: str, port: int) -> bool:
    probe = (
        "import socket,sys\n"
        "s=socket.socket(); s.settimeout(2)\n"
        f"sys.exit(0 if s.connect_ex(({host!r},{port}))==0 else 1)\n"
    )
    return net.run(namespace, [sys.executable, "-c", probe]).returncode == 0


def _wait_reachable(
    net: Network, namespace: str, host: str, port: int, process: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + 60
    while not _reachable(net, namespace, host, port):
        assert process.poll() is None, f"the server for {host}:{port} exited with {process.returncode}"
        assert time.monotonic() < deadline, f"{host}:{port} never answered from {namespace}"
        time.sleep(0.1)


@pytest.fixture
def net() -> Iterator[Network]:
    with Network.create() as made:
        yield made


def test_setup_enroll_redeem_purchase_open_sync_over_the_link(
    net: Network, swtpm_factory, tmp_path: Path
) -> None:
    tpm = swtpm_factory(transport="unix")
    ca, cert, key = server_certificate(tmp_path, net.center_address)

    center_url = f"https://{net.center_address}:{CENTER_PORT}"
    center = CenterServer(
        tmp_path / "center", tpm.ca_bundle, port=CENTER_PORT, host=net.center_address, issuer=center_url
    ).build()
    tls = ["--tls-cert", str(cert), "--tls-key", str(key), "--issuer", center_url]
    center_process = net.popen(
        net.center,
        [*center.serve_argv(), *tls],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    board = net.start_device(
        tmp_path / "board", tpm.tcti, DEVICE_PORT, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        _wait_reachable(net, net.pc, net.center_address, CENTER_PORT, center_process)
        _wait_reachable(net, net.pc, net.board_address, DEVICE_PORT, board)

        # The board is on the PC's link only: the center cannot reach it.
        assert not _reachable(net, net.center, net.board_address, DEVICE_PORT)

        udev = tmp_path / "pc.umockdev"
        device_id = "dev_" + "a" * 32  # the recorded serial; the real one is checked against health below
        udev.write_text(_usb_board("1-1", device_id, net.pc_link_interface))
        cli = Cli(
            tmp_path / "pc",
            env={"COFFER_CENTER": center_url, "COFFER_CENTER_CA": str(ca), "COFFER_PIN": PIN},
            prefix=("ip", "netns", "exec", net.pc, "umockdev-run", "-d", str(udev), "--"),
        )
        (found,) = cli.json("devices")
        assert found["url"] == f"http://{net.board_address}:{DEVICE_PORT}"

        set_up = cli.json("device", "setup")
        cli.json("device", "unlock")
        enrolled = cli.json("enroll")
        assert enrolled["device_id"] == set_up["device_id"]
        assert enrolled["welcome_credit"] is not None  # a genuine TPM (swtpm's EK CA): the welcome credit

        code = center.credit(set_up["device_id"], 2000)
        cli.json("redeem", code)
        catalog = cli.json("catalog")
        item = next(i for i in catalog if i["media_kind"] == "video")
        out = tmp_path / "opened.mp4"
        bought = cli.json("purchase", item["item_id"])
        assert bought["debits"][0]["amount"] == item["price"]["amount"]
        opened = cli.json("open", item["item_id"], "-o", str(out))
        assert opened["sha256"] == item["content_sha256"]
        assert hashlib.sha256(out.read_bytes()).hexdigest() == item["content_sha256"]
        synced = cli.json("sync")
        assert synced["statement"]["matches"] is True, synced["statement"]
        wallet = cli.json("wallet")
        assert wallet["outbox"] == []

        # Without the test CA, the center's certificate is refused (TLS verified): center unreachable.
        strict = Cli(
            tmp_path / "pc", env={"COFFER_CENTER": center_url}, prefix=("ip", "netns", "exec", net.pc)
        )
        refused = strict.fails(22, "catalog")
        assert "CERTIFICATE_VERIFY_FAILED" in refused.stderr or "certificate" in refused.stderr.lower()
    finally:
        stop(center_process)
        code = stop(board)
        _, errors = board.communicate()
    assert code == 0, errors.decode(errors="replace")[-2000:]
