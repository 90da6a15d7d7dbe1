"""Finding boards on USB (DESIGN.md "USB link"): a `net` interface whose USB parent has our vendor/product id.

The board's gadget (CDC-NCM + CDC-ECM) shows up on the PC as a network interface (`cdc_ncm`/`cdc_ether`);
its USB device carries idVendor/idProduct (below) and serial = device_id. The board serves DHCP on a
point-to-point subnet and listens on its own end of it: with the PC's address on that interface, the board
is the other host of a /30 or /31, else the subnet's first host (the DHCP server). The service port is
`DEVICE_PORT`. `--device URL` / `COFFER_DEVICE` skip discovery (macOS, Windows, or a board elsewhere).
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import pyudev

from protocol import usb
from terminal_cli.errors import NoDeviceFound

#: The gadget's USB ids as sysfs spells them (lowercase hex, 4 digits) and the device service's port on the
#: link: one definition in protocol.usb, shared with the board's gadget.
USB_VENDOR_ID = f"{usb.USB_VENDOR_ID:04x}"
USB_PRODUCT_ID = f"{usb.USB_PRODUCT_ID:04x}"
DEVICE_PORT = usb.DEVICE_PORT
_DEVICE_ID = re.compile(r"^dev_[a-z2-7]{32}$")


@dataclass(frozen=True)
class Board:
    device_id: str
    interface: str
    driver: str | None
    pc_address: str | None  # the PC's address on the link (from DHCP or static)
    address: str | None  # the board's address, derived from it

    @property
    def url(self) -> str | None:
        return f"http://{self.address}:{DEVICE_PORT}" if self.address else None

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "url": self.url}


def _link_addresses(interface: str) -> tuple[str | None, str | None]:
    """(the PC's IPv4 address on `interface`, the board's) from the kernel (`ip -j addr`), or (None, None)."""
    try:
        out = subprocess.run(
            ["ip", "-j", "-4", "addr", "show", "dev", interface],
            capture_output=True,
            text=True,
            check=False,
            timeout=5,
        )
        info = json.loads(out.stdout or "[]")
    except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError):
        return None, None
    for link in info if isinstance(info, list) else []:
        for addr in link.get("addr_info", []):
            if addr.get("family") != "inet":
                continue
            iface = ipaddress.ip_interface(f"{addr['local']}/{addr['prefixlen']}")
            hosts = iface.network.hosts()
            # a /30 or /31: the other end; a DHCP subnet: its first host (the board serves DHCP)
            network_hosts = [str(h) for h in hosts] if iface.network.prefixlen >= 30 else [str(next(hosts))]
            others = [h for h in network_hosts if h != str(iface.ip)]
            return str(iface.ip), (others[0] if others else None)
    return None, None


def _board(device: pyudev.Device) -> Board | None:
    usb = device.find_parent("usb", "usb_device")
    if usb is None:
        return None
    attributes = usb.attributes

    def attribute(name: str) -> str | None:
        try:
            return str(attributes.asstring(name)).strip()
        except (KeyError, UnicodeDecodeError):
            return None

    if attribute("idVendor") != USB_VENDOR_ID or attribute("idProduct") != USB_PRODUCT_ID:
        return None
    serial = attribute("serial")
    if serial is None or not _DEVICE_ID.match(serial):
        return None
    interface = device.sys_name
    parent = device.find_parent("usb", "usb_interface")
    pc, board = _link_addresses(interface)
    return Board(
        device_id=serial,
        interface=interface,
        driver=parent.driver if parent is not None else None,
        pc_address=pc,
        address=board,
    )


def _context() -> pyudev.Context:
    """libudev, or NoDeviceFound where there is none (macOS, Windows, a container without /run/udev)."""
    try:
        return pyudev.Context()
    except (ImportError, OSError) as exc:
        raise NoDeviceFound(f"USB discovery needs udev (Linux): {exc}") from exc


def find_boards(context: pyudev.Context | None = None) -> list[Board]:
    """Every board plugged in now, by device_id."""
    context = context or _context()
    boards = (_board(d) for d in context.list_devices(subsystem="net"))
    return sorted((b for b in boards if b is not None), key=lambda b: b.device_id)


def wait_for_board(
    timeout: float, context: pyudev.Context | None = None, on_wait: Callable[[], None] | None = None
) -> Board:
    """The first board present now or plugged in within `timeout` seconds (a udev `add` event); `on_wait` is
    called once when none is present yet and listening begins."""
    context = context or _context()
    monitor = pyudev.Monitor.from_netlink(context)
    monitor.filter_by(subsystem="net")
    monitor.start()  # listen before looking, so a board plugged in meanwhile is not missed
    present = find_boards(context)
    if present:
        return present[0]
    if on_wait is not None:
        on_wait()
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        device = monitor.poll(timeout=left)
        if device is None:
            break
        if device.action in ("add", "move", "change") and (board := _board(device)) is not None:
            return board
    raise NoDeviceFound(f"no board was plugged in within {timeout:.0f} s")
