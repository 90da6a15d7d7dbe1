"""Boot the built image under `qemu-system-aarch64 -M virt` (TCG) for tests/image/test_boot.py.

- A copy of the image, grown by 512 MiB (so first boot's partition growth has work to do), with the test-only
  payload of tests/image/guest/ written into the copy's root with debugfs: the production image never holds it
  (test_static.py checks that).
- Kernel and initrd from the image's boot partition, the kernel command line from its cmdline.txt (the console
  moved to QEMU's PL011), plus `coffer_test.tpm_port=` for the forwarder.
- Everything on the host side runs in a network namespace of its own: QEMU (user networking), the swtpm the
  guest's TPM forwards to (QEMU maps the guest's 10.0.2.2 to the namespace's loopback), and the board's
  address 192.168.7.1 on the namespace's loopback, forwarded into the guest — so a client in the namespace
  uses the board's real URL and `Host`, and the guest relays to it over the USB link.
"""

from __future__ import annotations

import contextlib
import ctypes
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.image.artifacts import Image, extract, put_back
from tests.support.swtpm import SwtpmInstance, SwtpmTemplate, new_instance

GUEST = Path(__file__).parent / "guest"
BOARD_URL = "http://192.168.7.1:8470"
CONTROL_URL = "http://127.0.0.1:9000"
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class BootFailed(AssertionError):
    """The guest did not get where the test waited for; the message carries the diagnostics."""


@contextlib.contextmanager
def entered(namespace: str) -> Iterator[None]:
    """Run the block (this thread only) in network namespace `namespace`: sockets made here stay in it and
    child processes started here are born in it."""
    with open("/proc/self/ns/net", "rb") as home, open(f"/run/netns/{namespace}", "rb") as target:
        if _libc.setns(target.fileno(), CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {namespace}")
        try:
            yield
        finally:
            if _libc.setns(home.fileno(), CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def prepare_disk(image: Image, workdir: Path, *, conf_extra: str = "") -> Path:
    """A bootable copy of the image with the test payload; `conf_extra` lines appended to coffer.conf."""
    disk = workdir / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(image.raw), str(disk)], check=True)
    with disk.open("r+b") as f:
        f.truncate(image.raw.stat().st_size + 512 * 1024 * 1024)
    root = workdir / "root.ext4"
    extract(disk, image.root, root)
    script = ["mkdir /usr/lib/coffer-test"]
    for path in sorted(GUEST.iterdir()):
        if path.suffix == ".service":
            script += [
                f"write {path} /etc/systemd/system/{path.name}",
                f"symlink /etc/systemd/system/multi-user.target.wants/{path.name} "
                f"/etc/systemd/system/{path.name}",
            ]
        else:
            script += [
                f"write {path} /usr/lib/coffer-test/{path.name}",
                f"sif /usr/lib/coffer-test/{path.name} mode 0100755",
            ]
    (workdir / "debugfs.cmd").write_text("\n".join(script) + "\n", encoding="utf-8")
    subprocess.run(
        ["debugfs", "-w", "-f", str(workdir / "debugfs.cmd"), str(root)], check=True, capture_output=True
    )
    put_back(disk, image.root, root)
    root.unlink()
    if conf_extra:
        conf = workdir / "coffer.conf"
        conf.write_bytes(image.boot_file("coffer.conf") + conf_extra.encode())
        subprocess.run(
            ["mcopy", "-o", "-i", f"{disk}@@{image.boot.start}", str(conf), "::coffer.conf"], check=True
        )
    return disk


@dataclass
class Guest:
    namespace: str
    workdir: Path
    tpm: SwtpmInstance
    qemu: subprocess.Popen[bytes]
    started: float
    console: Path
    timings: dict[str, float] = field(default_factory=dict)
    link_rebinds: dict[str, int] = field(
        default_factory=dict
    )  # host-side driver re-binds (see guest/pc-side)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        with entered(self.namespace), httpx.Client(timeout=60, trust_env=False) as client:
            return client.request(method, url, **kwargs)

    def board(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.request(method, BOARD_URL + path, **kwargs)

    def control(self, method: str, path: str) -> httpx.Response:
        return self.request(method, CONTROL_URL + path)

    def diagnostics(self) -> str:
        parts = [f"console (last 4 KB):\n{self.console.read_text(errors='replace')[-4096:]}"]
        try:
            parts.append("network:\n" + self.control("GET", "/network").text[-8000:])
            parts.append("journal:\n" + self.control("GET", "/journal").text[-20000:])
        except httpx.HTTPError as exc:
            parts.append(f"journal: unreachable ({exc})")
        return "\n".join(parts)

    def wait_for(self, what: str, check: Any, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if self.qemu.poll() is not None:
                raise BootFailed(
                    f"QEMU exited ({self.qemu.returncode}) waiting for {what}\n{self.diagnostics()}"
                )
            try:
                result = check()
                if result:
                    self.timings[what] = time.monotonic() - self.started
                    return result
            except httpx.HTTPError as exc:
                last = exc
            time.sleep(1)
        raise BootFailed(f"timed out waiting for {what} (last: {last})\n{self.diagnostics()}")


@contextlib.contextmanager
def network_namespace() -> Iterator[str]:
    """The host side's own namespace: loopback up, the board's address on it (QEMU forwards it)."""
    namespace = f"coffer-qemu-{secrets.token_hex(3)}"
    _ip("netns", "add", namespace)
    try:
        _ip("-n", namespace, "link", "set", "lo", "up")
        _ip("-n", namespace, "addr", "add", "192.168.7.1/32", "dev", "lo")
        # connections to it leave from 127.0.0.1: QEMU's user network shows a loopback source to the guest
        # as 10.0.2.2 and any other as is, and 192.168.7.1 is the guest's own address (it would drop the SYN)
        route = ["local", "192.168.7.1", "dev", "lo", "table", "local", "proto", "kernel", "scope", "host"]
        _ip("-n", namespace, "route", "replace", *route, "src", "127.0.0.1")
        yield namespace
    finally:
        subprocess.run(["ip", "netns", "del", namespace], check=False, capture_output=True)


@contextlib.contextmanager
def booted(
    image: Image, template: SwtpmTemplate, workdir: Path, namespace: str, *, conf_extra: str = ""
) -> Iterator[Guest]:
    disk = prepare_disk(image, workdir, conf_extra=conf_extra)
    names = image.boot_listing()
    kernel = image.boot_copy(next(n for n in names if n.startswith("vmlinuz")), workdir / "vmlinuz")
    initrd = image.boot_copy(next(n for n in names if n.startswith("initrd.img")), workdir / "initrd")
    tpm: SwtpmInstance | None = None
    qemu: subprocess.Popen[bytes] | None = None
    try:
        with entered(namespace):
            tpm = new_instance(template, workdir / "tpm")
            assert tpm.port is not None
            cmdline = image.boot_file("cmdline.txt").decode().split()
            words = [w for w in cmdline if not w.startswith("console=")]
            append = " ".join(["console=ttyAMA0", *words, f"coffer_test.tpm_port={tpm.port}"])
            console = workdir / "console.log"
            # fmt: off
            command = [
                shutil.which("qemu-system-aarch64") or "qemu-system-aarch64",
                "-M", "virt", "-cpu", "cortex-a72", "-smp", "2", "-m", "1024",
                "-display", "none", "-monitor", "none", "-serial", f"file:{console}",
                "-kernel", str(kernel), "-initrd", str(initrd), "-append", append,
                "-drive", f"file={disk},format=raw,if=none,id=disk0,cache=unsafe",
                "-device", "virtio-blk-device,drive=disk0",
                "-netdev", "user,id=net0,restrict=off,"
                "hostfwd=tcp:192.168.7.1:8470-10.0.2.15:8470,hostfwd=tcp:127.0.0.1:9000-10.0.2.15:9000",
                "-device", "virtio-net-device,netdev=net0",
            ]
            # fmt: on
            started = time.monotonic()
            with (workdir / "qemu.log").open("wb") as log:
                qemu = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        yield Guest(namespace, workdir, tpm, qemu, started, console)
    finally:
        if qemu is not None and qemu.poll() is None:
            qemu.kill()
            qemu.wait(timeout=30)
        if tpm is not None:
            tpm.kill()
        with contextlib.suppress(FileNotFoundError):
            disk.unlink()
