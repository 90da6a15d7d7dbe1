"""The board's USB gadget: the PC's network link to the device (DESIGN.md "USB link").

    python -m device_os.gadget up [--config /boot/firmware/coffer.conf] [--status /run/coffer/provision.json]
    python -m device_os.gadget down

`up` builds a libcomposite gadget in configfs and binds it to the board's USB device controller:

    configuration 1: CDC-NCM with the Microsoft OS descriptor `WINNCM` (Windows 10/11 load their own NCM
                     driver; Linux's cdc_ncm picks this configuration too)
    configuration 2: CDC-ECM (macOS)

serial number = the board's device_id; the MAC addresses of both ends are derived from it, so the PC sees
the same link every time and across reflashes of the same TPM. The two gadget interfaces (only the
configuration the PC chose carries traffic) are ports of one bridge, `coffer0`, that holds the listen
address and serves DHCP: `up` writes those systemd-networkd files into /run/systemd/network before networkd
starts. networkd brings the ports up, and f_ncm reports carrier to the PC only once its interface is up
(docs/image.md).
Windows caches the descriptors per VID/PID/bcdDevice: bump BCD_DEVICE whenever they change.

Self-contained (the standard library, `device_os.envfile` and `protocol.usb`, both standard library only): it
runs before the device service and must not need its dependencies.
Exit codes: 0 done, 1 the kernel refused a step or the configuration is bad (one line on stderr), 2 usage.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from device_os.envfile import ConfigFileError, parse_environment_file
from protocol.usb import USB_PRODUCT_ID, USB_VENDOR_ID

CONFIGFS = Path("/sys/kernel/config/usb_gadget")
UDC_CLASS = Path("/sys/class/udc")
NETWORKD_RUN = Path("/run/systemd/network")
GADGET = "coffer"
BRIDGE = "coffer0"

# The USB ids terminal_cli's discovery matches, plus a device_id-shaped serial number (protocol.usb).
ID_VENDOR = USB_VENDOR_ID
ID_PRODUCT = USB_PRODUCT_ID
BCD_DEVICE = 0x0100  # bump when the descriptors change (Windows caches them per VID/PID/bcdDevice)
MANUFACTURER = "Coffer"
PRODUCT = "Coffer board"
# Microsoft OS descriptors 1.0 (as PiKVM's otg gadget writes them): vendor code and signature
MS_VENDOR_CODE = 0xCD
MS_SIGNATURE = "MSFT100"
NCM = "ncm.usb0"
ECM = "ecm.usb1"
_DEVICE_ID_RE = re.compile(r"\Adev_[a-z2-7]{32}\Z")
_IFNAME_RE = re.compile(r"\A[A-Za-z0-9_.-]{1,15}\Z")


class GadgetError(Exception):
    """The gadget cannot be built: bad configuration, no device_id, no UDC, or the kernel refused a write."""


@dataclass(frozen=True)
class LinkConfig:
    """The USB link from coffer.conf: the board's address (the service's listen address) in a small subnet."""

    address: ipaddress.IPv4Address
    subnet: ipaddress.IPv4Network

    @classmethod
    def from_conf(cls, values: dict[str, str]) -> LinkConfig:
        listen = values.get("COFFER_DEVICE_LISTEN", "")
        subnet_text = values.get("COFFER_DEVICE_LINK_SUBNET", "")
        host, sep, port = listen.rpartition(":")
        try:
            address = ipaddress.IPv4Address(host)
            subnet = ipaddress.IPv4Network(subnet_text)
        except ValueError:
            raise GadgetError(
                "coffer.conf needs COFFER_DEVICE_LISTEN=IPv4:PORT and COFFER_DEVICE_LINK_SUBNET=IPv4/PREFIX"
            ) from None
        if not sep or not port.isdigit():
            raise GadgetError("COFFER_DEVICE_LISTEN must be IPv4:PORT")
        if subnet.num_addresses < 4:
            raise GadgetError("COFFER_DEVICE_LINK_SUBNET must leave an address for the PC (a /30 or larger)")
        if address not in subnet or address in (subnet.network_address, subnet.broadcast_address):
            raise GadgetError(
                "COFFER_DEVICE_LISTEN's address must be a host address inside COFFER_DEVICE_LINK_SUBNET"
            )
        return cls(address=address, subnet=subnet)


def read_conf(path: Path) -> dict[str, str]:
    """The variables of coffer.conf, read as the device service reads them (`device_os.envfile`: systemd
    EnvironmentFile syntax)."""
    try:
        return parse_environment_file(path.read_text(encoding="utf-8"))
    except ConfigFileError as exc:
        raise GadgetError(f"{path}: {exc}") from None


def read_device_id(status: Path) -> str:
    """device_id from `device_os provision`'s JSON status (written by coffer-provision.service)."""
    try:
        device_id = json.loads(status.read_text(encoding="utf-8")).get("device_id")
    except (OSError, ValueError, AttributeError) as exc:
        raise GadgetError(f"no provisioning status at {status}: {exc}") from None
    if not isinstance(device_id, str) or not _DEVICE_ID_RE.match(device_id):
        raise GadgetError(f"{status} names no device_id (was the TPM provisioned?)")
    return device_id


def derived_mac(device_id: str, role: str) -> str:
    """A stable, locally administered unicast MAC for `role` (ncm-device, ecm-device, host, bridge)."""
    digest = bytearray(hashlib.sha256(f"coffer/usb-mac/v1/{role}/{device_id}".encode("ascii")).digest()[:6])
    digest[0] = (digest[0] & 0xFC) | 0x02  # locally administered, not multicast
    return ":".join(f"{b:02x}" for b in digest)


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value + "\n", encoding="ascii")
    except OSError as exc:
        raise GadgetError(f"the kernel refused {value!r} for {path}: {exc.strerror}") from None


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _link(target: Path, link: Path) -> None:
    if not link.is_symlink():
        link.symlink_to(target)


def write_gadget(root: Path, device_id: str) -> Path:
    """Create the gadget's configfs tree under `root` (CONFIGFS in production); returns the gadget folder.
    Not bound yet: see `bind`."""
    if not _DEVICE_ID_RE.match(device_id):
        raise GadgetError("the serial number must be a device_id")
    gadget = _mkdir(root / GADGET)
    _write(gadget / "idVendor", f"0x{ID_VENDOR:04x}")
    _write(gadget / "idProduct", f"0x{ID_PRODUCT:04x}")
    _write(gadget / "bcdDevice", f"0x{BCD_DEVICE:04x}")
    _write(gadget / "bcdUSB", "0x0200")
    # Miscellaneous / Common / Interface Association: a composite device Windows accepts without an .inf
    _write(gadget / "bDeviceClass", "0xef")
    _write(gadget / "bDeviceSubClass", "0x02")
    _write(gadget / "bDeviceProtocol", "0x01")
    strings = _mkdir(gadget / "strings" / "0x409")
    _write(strings / "serialnumber", device_id)
    _write(strings / "manufacturer", MANUFACTURER)
    _write(strings / "product", PRODUCT)

    functions = {NCM: "ncm", ECM: "ecm"}
    for name, kind in functions.items():
        function = _mkdir(gadget / "functions" / name)
        _write(function / "dev_addr", derived_mac(device_id, f"{kind}-device"))  # two bridge ports: distinct
        # the PC's end: one MAC whichever configuration the PC picks, so it keeps its DHCP lease (a /30 has
        # one address for the PC; a second MAC would get no offer until the first lease expired)
        _write(function / "host_addr", derived_mac(device_id, "host"))
    interface = _mkdir(
        gadget / "functions" / NCM / "os_desc" / "interface.ncm"
    )  # a default group in configfs
    _write(interface / "compatible_id", "WINNCM")

    for number, (name, label) in enumerate(((NCM, "CDC NCM"), (ECM, "CDC ECM")), start=1):
        config = _mkdir(gadget / "configs" / f"c.{number}")
        _write(config / "MaxPower", "250")
        _write(config / "bmAttributes", "0x80")
        _write(_mkdir(config / "strings" / "0x409") / "configuration", label)
        _link(gadget / "functions" / name, config / name)

    os_desc = _mkdir(gadget / "os_desc")
    _write(os_desc / "use", "1")
    _write(os_desc / "b_vendor_code", f"0x{MS_VENDOR_CODE:02x}")
    _write(os_desc / "qw_sign", MS_SIGNATURE)
    _link(gadget / "configs" / "c.1", os_desc / "c.1")  # Windows reads the OS descriptor of configuration 1
    return gadget


def bind(gadget: Path, udc_class: Path = UDC_CLASS, udc: str | None = None) -> str:
    """Bind the gadget to `udc` (default: the only / first controller in /sys/class/udc); returns its name."""
    if udc is None:
        controllers = sorted(p.name for p in udc_class.iterdir()) if udc_class.is_dir() else []
        if not controllers:
            raise GadgetError(
                "no USB device controller (is dwc2 loaded and the OTG port in peripheral mode?)"
            )
        udc = controllers[0]
    _write(gadget / "UDC", udc)
    return udc


def interface_names(gadget: Path) -> list[str]:
    """The kernel's names of the gadget's network interfaces (the functions' `ifname`, known once bound)."""
    names = []
    for name in (NCM, ECM):
        try:
            ifname = (gadget / "functions" / name / "ifname").read_text(encoding="ascii").strip()
        except FileNotFoundError:
            ifname = ""
        if not _IFNAME_RE.match(ifname):
            raise GadgetError(f"{name} has no network interface yet (ifname {ifname!r})")
        names.append(ifname)
    return names


def networkd_files(link: LinkConfig, device_id: str, ports: list[str]) -> dict[str, str]:
    """systemd-networkd files: the bridge `coffer0` with both gadget interfaces as ports, the board's address,
    and a DHCP server that hands the PC an address but no router and no DNS (the PC keeps its own routes)."""
    return {
        f"10-{BRIDGE}.netdev": (
            f"[NetDev]\nName={BRIDGE}\nKind=bridge\nMACAddress={derived_mac(device_id, 'bridge')}\n"
        ),
        "10-coffer-usb-ports.network": (
            f"[Match]\nName={' '.join(ports)}\n\n[Network]\nBridge={BRIDGE}\n"
            "LinkLocalAddressing=no\n\n[Link]\nRequiredForOnline=no\n"
        ),
        f"10-{BRIDGE}.network": (
            f"[Match]\nName={BRIDGE}\n\n[Network]\nAddress={link.address}/{link.subnet.prefixlen}\n"
            "DHCPServer=yes\nConfigureWithoutCarrier=yes\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n\n"
            # PersistLeases=no: leases in RAM (systemd >= 256 otherwise waits for a writable /var/lib/systemd
            # before it starts the server: never, on the read-only root)
            "[DHCPServer]\nPersistLeases=no\nEmitRouter=no\nEmitDNS=no\nEmitNTP=no\nDefaultLeaseTimeSec=3600\n\n"
            "[Link]\nRequiredForOnline=no\n"
        ),
    }


def write_networkd(directory: Path, files: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text, encoding="ascii")


def remove_gadget(root: Path) -> None:
    """Unbind and take the tree down in the order configfs requires: links, configurations, functions,
    strings, the gadget. configfs removes a group's attributes with the group (rmdir alone); any other tree
    (the tests' stand-in) is removed with its files."""
    gadget = root / GADGET
    if not gadget.exists():
        return
    configfs = root.resolve() == CONFIGFS

    def remove(folder: Path) -> None:
        if configfs:
            folder.rmdir()
        else:
            shutil.rmtree(folder)

    udc = gadget / "UDC"
    if udc.exists() and udc.read_text(encoding="ascii").strip():
        _write(udc, "")
    for link in [*gadget.glob("configs/*/*.usb*"), *gadget.glob("os_desc/c.*")]:
        link.unlink()
    for folder in [*gadget.glob("configs/*/strings/*"), *gadget.glob("configs/*")]:
        remove(folder)
    for folder in [*gadget.glob("functions/*"), *gadget.glob("strings/*")]:
        remove(folder)
    remove(gadget)


def up(
    conf: Path,
    status: Path,
    *,
    root: Path = CONFIGFS,
    udc_class: Path = UDC_CLASS,
    networkd: Path = NETWORKD_RUN,
) -> str:
    """The whole `up` sequence; returns a one-line summary."""
    link = LinkConfig.from_conf(read_conf(conf))
    device_id = read_device_id(status)
    remove_gadget(root)
    gadget = write_gadget(root, device_id)
    udc = bind(gadget, udc_class)
    ports = interface_names(gadget)
    write_networkd(networkd, networkd_files(link, device_id, ports))
    where = f"{link.address}/{link.subnet.prefixlen}"
    return f"gadget {device_id} on {udc}: {', '.join(ports)} in {BRIDGE} at {where}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="device_os.gadget", description="The board's USB gadget link")
    sub = parser.add_subparsers(dest="command", required=True)
    cmd_up = sub.add_parser("up", help="build and bind the gadget, write the networkd files")
    cmd_up.add_argument("--config", type=Path, default=Path("/boot/firmware/coffer.conf"))
    cmd_up.add_argument("--status", type=Path, default=Path("/run/coffer/provision.json"))
    sub.add_parser("down", help="unbind and remove the gadget")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            print(up(args.config, args.status))
        else:
            remove_gadget(CONFIGFS)
    except (GadgetError, OSError) as exc:
        print(f"device_os.gadget: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
