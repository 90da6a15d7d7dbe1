"""The simulated USB link: a network namespace for the board and a veth pair whose board end is `usb0`.

DESIGN.md "USB link": tests and the demo simulate the gadget's point-to-point Ethernet with a veth pair
between network namespaces, the device service bound to the board's end only. The host end stays in the
caller's namespace (it plays the PC); the board end is `usb0` inside a namespace of its own. Addresses come
from a /30 in 10.213.0.0/16 picked per link, so parallel runs don't collide; nothing is routed elsewhere.

Needs root (`ip netns`, `ip link`). `SimulatedLink.create()` ... `destroy()`, or use it as a context manager.

`Network` is the three-namespace layout of the end-to-end tests: `center`, `pc` and `board` namespaces, a veth
pair center <-> pc and the USB link pc <-> board (the board's end named usb0). The pc namespace does not
forward, and the center has no route to the link: the board is unreachable from the center, as on a real PC.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BOARD_INTERFACE = "usb0"
_POOL = ipaddress.ip_network("10.213.0.0/16")


class LinkError(RuntimeError):
    """The simulated link could not be built (not root, no iproute2, ...)."""


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise LinkError(f"ip {' '.join(args)}: {result.stderr.strip() or result.returncode}")


@dataclass
class SimulatedLink:
    namespace: str
    host_interface: str
    host_address: str
    board_address: str
    prefix_length: int = 30

    @classmethod
    def create(cls) -> SimulatedLink:
        if os.geteuid() != 0:
            raise LinkError("the simulated USB link needs root (network namespaces and veth pairs)")
        if shutil.which("ip") is None:
            raise LinkError("iproute2's `ip` is not installed")
        tag = secrets.token_hex(3)
        subnet = list(_POOL.subnets(new_prefix=30))[secrets.randbelow(2**14)]
        host, board = (str(a) for a in list(subnet.hosts())[:2])
        link = cls(
            namespace=f"coffer-board-{tag}",
            host_interface=f"cfh{tag}",
            host_address=host,
            board_address=board,
        )
        try:
            _ip("netns", "add", link.namespace)
            _ip(
                "link",
                "add",
                link.host_interface,
                "type",
                "veth",
                "peer",
                "name",
                BOARD_INTERFACE,
                "netns",
                link.namespace,
            )
            _ip("addr", "add", f"{host}/30", "dev", link.host_interface)
            _ip("link", "set", link.host_interface, "up")
            _ip("-n", link.namespace, "addr", "add", f"{board}/30", "dev", BOARD_INTERFACE)
            _ip("-n", link.namespace, "link", "set", BOARD_INTERFACE, "up")
            _ip("-n", link.namespace, "link", "set", "lo", "up")
        except LinkError:
            link.destroy()
            raise
        return link

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside the board's namespace."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.command(argv), **kwargs)

    def run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(argv), capture_output=True, text=True, check=False, **kwargs)

    def start_device(self, data_dir: Path, tcti: str, port: int, **popen: Any) -> subprocess.Popen[bytes]:
        """First boot on the board's side: `device_os provision`, then `device_os serve` bound to usb0's
        address only. Raises LinkError if provisioning fails; `popen` goes to the service's Popen."""
        provision = self.run(
            [sys.executable, "-m", "device_os", "provision", "--data", str(data_dir), "--tcti", tcti]
        )
        if provision.returncode != 0:
            raise LinkError(f"device_os provision failed: {provision.stderr.strip()}")
        serve = ["serve", "--data", str(data_dir), "--tcti", tcti, "--listen", f"{self.board_address}:{port}"]
        # A simulated board (demo, tests) trusts the first center it enrolls with; a real image pins its root.
        env = {**popen.pop("env", os.environ), "COFFER_DEVICE_TRUST_FIRST_CENTER": "1"}
        return self.popen([sys.executable, "-m", "device_os", *serve], env=env, **popen)

    def destroy(self) -> None:
        """Remove the namespace (its end of the veth pair goes with it, and so does the host end)."""
        subprocess.run(["ip", "link", "del", self.host_interface], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True, check=False)

    def __enter__(self) -> SimulatedLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()


def _pair(pool: ipaddress.IPv4Network) -> tuple[str, str]:
    subnet = list(pool.subnets(new_prefix=30))[secrets.randbelow(2 ** (30 - pool.prefixlen))]
    first, second = (str(a) for a in list(subnet.hosts())[:2])
    return first, second


@dataclass
class Network:
    """Three namespaces: the center, the PC and the board, joined center <-> pc and pc <-> board (usb0).

    Addresses: `center_address` (the center's end), `pc_center_address` (the PC's end towards it),
    `pc_link_address` (the PC's end of the USB link, interface `pc_link_interface`), `board_address` (usb0).
    """

    tag: str
    center_address: str
    pc_center_address: str
    pc_link_address: str
    board_address: str
    pc_link_interface: str = "usb1"

    @property
    def center(self) -> str:
        return f"coffer-center-{self.tag}"

    @property
    def pc(self) -> str:
        return f"coffer-pc-{self.tag}"

    @property
    def board(self) -> str:
        return f"coffer-board-{self.tag}"

    @classmethod
    def create(cls) -> Network:
        if os.geteuid() != 0:
            raise LinkError("the simulated network needs root (network namespaces and veth pairs)")
        if shutil.which("ip") is None:
            raise LinkError("iproute2's `ip` is not installed")
        pools = list(_POOL.subnets(new_prefix=17))
        pc_center, center = _pair(pools[0])
        pc_link, board = _pair(pools[1])
        net = cls(secrets.token_hex(3), center, pc_center, pc_link, board)
        try:
            for ns in (net.center, net.pc, net.board):
                _ip("netns", "add", ns)
                _ip("-n", ns, "link", "set", "lo", "up")
            # center <-> pc: the PC's uplink (the "internet")
            _ip(
                "-n",
                net.pc,
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                net.center,
            )
            _ip("-n", net.pc, "addr", "add", f"{pc_center}/30", "dev", "eth0")
            _ip("-n", net.center, "addr", "add", f"{center}/30", "dev", "eth0")
            # pc <-> board: the USB link, the board's end named usb0
            _ip(
                "-n", net.pc, "link", "add", net.pc_link_interface, "type", "veth",
                "peer", "name", BOARD_INTERFACE, "netns", net.board,
            )  # fmt: skip
            _ip("-n", net.pc, "addr", "add", f"{pc_link}/30", "dev", net.pc_link_interface)
            _ip("-n", net.board, "addr", "add", f"{board}/30", "dev", BOARD_INTERFACE)
            for ns, dev in ((net.pc, "eth0"), (net.center, "eth0"), (net.pc, net.pc_link_interface),
                            (net.board, BOARD_INTERFACE)):  # fmt: skip
                _ip("-n", ns, "link", "set", dev, "up")
        except LinkError:
            net.destroy()
            raise
        return net

    def command(self, namespace: str, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", namespace, *argv]

    def popen(self, namespace: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.command(namespace, argv), **kwargs)

    def run(self, namespace: str, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        kwargs.setdefault("capture_output", True)
        return subprocess.run(self.command(namespace, argv), text=True, check=False, **kwargs)

    def start_device(self, data_dir: Path, tcti: str, port: int, **popen: Any) -> subprocess.Popen[bytes]:
        """`device_os provision` then `device_os serve` in the board namespace, bound to usb0's address."""
        link = SimulatedLink(self.board, self.pc_link_interface, self.pc_link_address, self.board_address)
        return link.start_device(data_dir, tcti, port, **popen)

    def destroy(self) -> None:
        for ns in (self.center, self.pc, self.board):  # a namespace's veth ends go with it
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()
