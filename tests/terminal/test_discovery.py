"""USB discovery (DESIGN.md "USB link") against recorded udev trees (umockdev: FACTS.md), not a patched
pyudev.

The CLI runs under `umockdev-run`/`umockdev-wrapper`, so pyudev reads a testbed sysfs: a board is a `net`
interface whose USB parent has the gadget's vendor/product id and a device_id as its serial. The link address
comes from the kernel (`ip -j addr`): one test runs the CLI in a network namespace holding an interface of the
recorded name, so that part is real too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from terminal_cli.discovery import USB_PRODUCT_ID, USB_VENDOR_ID
from tests.terminal.support import ROOT, Cli

pytestmark = [pytest.mark.integration]

DEVICE_ID = "dev_" + "a" * 32
USB = "/devices/pci0000:00/0000:00:14.0/usb1"


def _usb_board(port: str, serial: str, interface: str, vendor: str = USB_VENDOR_ID) -> str:
    base = f"{USB}/{port}"
    return f"""P: {base}
E: DEVTYPE=usb_device
E: DRIVER=usb
E: SUBSYSTEM=usb
A: idVendor={vendor}
A: idProduct={USB_PRODUCT_ID}
A: serial={serial}

P: {base}/{port}:1.0
E: DEVTYPE=usb_interface
E: DRIVER=cdc_ncm
E: SUBSYSTEM=usb

P: {base}/{port}:1.0/net/{interface}
E: INTERFACE={interface}
E: SUBSYSTEM=net
A: address=02:00:00:00:00:01

"""


def _umockdev_run(
    cli: Cli, description: Path, *args: str, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    assert shutil.which("umockdev-run"), "umockdev is missing: run `make bootstrap` (scripts/bootstrap.sh)"
    return subprocess.run(
        [*prefix, "umockdev-run", "-d", str(description), "--", sys.executable, "-m", "terminal_cli", *args],
        cwd=ROOT,
        env=cli.environ(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_lists_only_our_boards(cli: Cli, tmp_path: Path) -> None:
    description = tmp_path / "tree.umockdev"
    description.write_text(
        _usb_board("1-1", DEVICE_ID, "usb7")
        + _usb_board("1-2", "dev_" + "b" * 32, "usb8", vendor="0bda")  # another vendor's adapter
        + _usb_board("1-3", "not-a-device-id", "usb9")  # our ids, but no device_id as serial
    )
    result = _umockdev_run(cli, description, "--json", "devices")
    assert result.returncode == 0, result.stderr
    boards = json.loads(result.stdout)
    assert [b["device_id"] for b in boards] == [DEVICE_ID]
    assert boards[0]["interface"] == "usb7"
    assert boards[0]["url"] is None  # no such interface in this namespace: no address yet

    human = _umockdev_run(cli, description, "devices")
    assert DEVICE_ID in human.stdout


def test_no_board_is_exit_20(cli: Cli, tmp_path: Path) -> None:
    description = tmp_path / "empty.umockdev"
    description.write_text(_usb_board("1-2", "dev_" + "b" * 32, "usb8", vendor="0bda"))
    listing = _umockdev_run(cli, description, "--json", "devices")
    assert listing.returncode == 0
    assert json.loads(listing.stdout) == []
    status = _umockdev_run(cli, description, "device", "status")
    assert status.returncode == 20, status.stderr
    assert status.stderr.startswith("error: no board found")


def test_several_boards_need_a_choice(cli: Cli, tmp_path: Path) -> None:
    description = tmp_path / "two.umockdev"
    description.write_text(
        _usb_board("1-1", DEVICE_ID, "usb7") + _usb_board("1-2", "dev_" + "c" * 32, "usb8")
    )
    status = _umockdev_run(cli, description, "device", "status")
    assert status.returncode == 2
    assert "--device" in status.stderr


def test_the_board_address_comes_from_the_link(cli: Cli, tmp_path: Path) -> None:
    namespace = f"coffer-disc-{tmp_path.name[-8:]}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        ip = ["ip", "-n", namespace]
        subprocess.run([*ip, "link", "add", "usb7", "type", "veth", "peer", "name", "peer7"], check=True)
        subprocess.run([*ip, "addr", "add", "10.213.250.1/30", "dev", "usb7"], check=True)
        subprocess.run([*ip, "link", "set", "usb7", "up"], check=True)
        description = tmp_path / "tree.umockdev"
        description.write_text(_usb_board("1-1", DEVICE_ID, "usb7"))
        result = _umockdev_run(
            cli, description, "--json", "devices", prefix=("ip", "netns", "exec", namespace)
        )
    finally:
        subprocess.run(["ip", "netns", "del", namespace], check=False)
    assert result.returncode == 0, result.stderr
    (board,) = json.loads(result.stdout)
    assert board["pc_address"] == "10.213.250.1"
    assert board["address"] == "10.213.250.2"
    assert board["url"] == "http://10.213.250.2:8470"


def test_wait_sees_the_board_plugged_in(cli: Cli, tmp_path: Path) -> None:
    description = tmp_path / "board.umockdev"
    description.write_text(_usb_board("1-1", DEVICE_ID, "usb7"))
    syspath = f"/sys{USB}/1-1/1-1:1.0/net/usb7"
    command = [sys.executable, "-m", "terminal_cli", "--json", "devices", "--wait", "--timeout", "60"]
    result = subprocess.run(
        [
            "umockdev-wrapper",
            "/usr/bin/python3",
            str(Path(__file__).with_name("umockdev_plug.py")),
            str(description),
            syspath,
            "--",
            *command,
        ],
        cwd=ROOT,
        env=cli.environ(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("waiting up to 60 s for a board")  # it listened before the plug-in
    assert [b["device_id"] for b in json.loads(result.stdout)] == [DEVICE_ID]


def test_wait_times_out_with_exit_20(cli: Cli, tmp_path: Path) -> None:
    description = tmp_path / "empty.umockdev"
    description.write_text(_usb_board("1-2", "dev_" + "b" * 32, "usb8", vendor="0bda"))
    result = _umockdev_run(cli, description, "devices", "--wait", "--timeout", "1")
    assert result.returncode == 20
    assert "no board was plugged in within 1 s" in result.stderr
