"""What QEMU cannot run, checked on the built image itself (DESIGN.md "Image"): the Pi's boot files, the TPM
and gadget overlays applied with fdtoverlay to copies of the Pi 4 and Zero 2 W trees as the firmware would,
the read-only root, the units enabled, and nothing of the boot test's helpers in the image."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.image.artifacts import Image

pytestmark = pytest.mark.image

TREES = {"pi4": "bcm2711-rpi-4-b.dtb", "zero2w": "bcm2837-rpi-zero-2-w.dtb"}
SPI0 = "/soc/spi@7e204000"
OTG = "/soc/usb@7e980000"
UNITS = ("coffer-provision.service", "coffer-gadget.service", "coffer-device.service")


def fdtget(dtb: Path, node: str, prop: str, *, kind: str = "s") -> str:
    result = subprocess.run(["fdtget", "-t", kind, str(dtb), node, prop], capture_output=True, text=True)
    assert result.returncode == 0, f"fdtget {dtb.name} {node} {prop}: {result.stderr.strip()}"
    return result.stdout.strip()


def config_lines(image: Image) -> list[str]:
    return [line.strip() for line in image.boot_file("config.txt").decode().splitlines() if line.strip()]


def test_config_txt_loads_our_overlays_with_the_upstream_trees(image: Image) -> None:
    lines = config_lines(image)
    assert "arm_64bit=1" in lines
    assert "upstream_kernel=1" in lines  # the firmware looks for bcm2837-rpi-zero-2-w.dtb, not the RPi name
    assert "dtoverlay=coffer-tpm-slb9670" in lines
    assert "dtoverlay=coffer-gadget" in lines
    assert not any(line.startswith(("cma=", "dtoverlay=vc4")) for line in lines)
    listing = image.boot_listing()
    for tree in TREES.values():
        assert tree in listing
    overlays = image.boot_listing("overlays")
    assert "coffer-tpm-slb9670.dtbo" in overlays
    assert "coffer-gadget.dtbo" in overlays
    for line in lines:  # every kernel/initramfs line names a file that is there
        if line.startswith(("kernel=", "initramfs ")):
            name = line.split("=", 1)[1] if line.startswith("kernel=") else line.split()[1]
            assert name in listing, line


def test_cmdline_read_only_root_gadget_modules_no_cma(image: Image) -> None:
    words = image.boot_file("cmdline.txt").decode().split()
    assert "root=LABEL=RASPIROOT" in words
    assert "ro" in words
    assert "rw" not in words
    assert "modules-load=dwc2,libcomposite" in words
    assert not any(w.startswith("cma=") for w in words)


@pytest.mark.parametrize("board", sorted(TREES))
def test_tpm_and_gadget_overlays_apply_to_the_board_trees(image: Image, tmp_path: Path, board: str) -> None:
    base = image.boot_copy(TREES[board], tmp_path / "base.dtb")
    tpm = image.boot_copy("overlays/coffer-tpm-slb9670.dtbo", tmp_path / "tpm.dtbo")
    otg = image.boot_copy("overlays/coffer-gadget.dtbo", tmp_path / "otg.dtbo")
    merged = tmp_path / "merged.dtb"
    subprocess.run(["fdtoverlay", "-i", str(base), "-o", str(merged), str(tpm), str(otg)], check=True)

    # before: no TPM on SPI0 (what the board sees without our overlay)
    assert subprocess.run(
        ["fdtget", str(base), f"{SPI0}/tpm@1", "compatible"], capture_output=True
    ).returncode
    # after: SPI0 enabled, the TPM on chip select 1, the driver's compatible strings
    assert fdtget(merged, SPI0, "status") == "okay"
    assert fdtget(merged, f"{SPI0}/tpm@1", "compatible").split() == ["infineon,slb9670", "tcg,tpm_tis-spi"]
    assert fdtget(merged, f"{SPI0}/tpm@1", "reg", kind="u") == "1"
    assert int(fdtget(merged, f"{SPI0}/tpm@1", "spi-max-frequency", kind="u")) <= 43_000_000
    # SPI0's pins (GPIO 7-11, ALT0) come from the tree's own pin group
    phandle = fdtget(merged, SPI0, "pinctrl-0", kind="u")
    pins = subprocess.run(
        ["fdtget", "-t", "u", str(merged), "/__symbols__", "spi0_gpio7"], capture_output=True
    )
    group = fdtget(merged, "/__symbols__", "spi0_gpio7")
    assert fdtget(merged, group, "phandle", kind="u") == phandle, pins
    assert fdtget(merged, group, "brcm,pins", kind="u").split() == ["7", "8", "9", "10", "11"]
    # the OTG controller is a USB peripheral (the gadget link)
    assert fdtget(merged, OTG, "dr_mode") == "peripheral"


def test_root_read_only_data_and_logs_in_ram(image: Image) -> None:
    fstab = [line.split() for line in image.root_file("/etc/fstab").splitlines() if line and line[0] != "#"]
    by_mount = {fields[1]: fields for fields in fstab}
    assert "ro" in by_mount["/"][3].split(",")
    assert by_mount["/var/lib/coffer"][0] == "LABEL=COFFERDATA"
    assert "x-systemd.growfs" in by_mount["/var/lib/coffer"][3].split(",")
    assert "ro" in by_mount["/boot/firmware"][3].split(",")
    journald = image.root_file("/etc/systemd/journald.conf.d/coffer.conf")
    assert "Storage=volatile" in journald
    # the data partition is last, so it can grow to the end of the card
    assert [p.number for p in image.partitions] == [1, 2, 3]
    assert image.data.start > image.root.start > image.boot.start


def test_units_enabled(image: Image) -> None:
    wants = image.root_listing("/etc/systemd/system/multi-user.target.wants")
    for unit in UNITS:
        assert unit in wants
        assert image.root_symlink(f"/etc/systemd/system/multi-user.target.wants/{unit}") == (
            f"/etc/systemd/system/{unit}"
        )
    assert "coffer-grow-data.service" in image.root_listing(
        "/etc/systemd/system/var-lib-coffer.mount.requires"
    )
    # masked on the read-only root: networkd's lease storage (it would hold the DHCP server back) and "online"
    for unit in ("systemd-networkd-persistent-storage.service", "systemd-networkd-wait-online.service"):
        assert image.root_symlink(f"/etc/systemd/system/{unit}") == "/dev/null", unit
    device = image.root_file("/etc/systemd/system/coffer-device.service")
    assert "ExecStart=/opt/coffer/bin/python -m device_os serve --config /boot/firmware/coffer.conf" in device
    assert "COFFER_DEVICE_TCTI=device:/dev/tpmrm0" in device
    assert "DeviceAllow=/dev/tpmrm0 rw" in device


def test_coffer_conf_on_the_boot_partition(image: Image) -> None:
    conf = dict(
        line.split("=", 1)
        for line in image.boot_file("coffer.conf").decode().splitlines()
        if line[:1].isalpha()
    )
    assert conf["COFFER_DEVICE_LISTEN"] == "192.168.7.1:8470"
    assert conf["COFFER_DEVICE_LINK_SUBNET"] == "192.168.7.0/30"
    assert "COFFER_DEVICE_PINNED_ROOT_FINGERPRINT" in conf
    # no trust on first use unless the owner asks (issue 12 finding 3): an unpinned image refuses enrollment
    assert conf["COFFER_DEVICE_TRUST_FIRST_CENTER"] == "0"


def test_nothing_of_the_boot_test_in_the_image(image: Image) -> None:
    guest = Path(__file__).parent / "guest"
    for name in sorted(p.name for p in guest.iterdir()):
        assert not image.root_exists(f"/etc/systemd/system/{name}"), name
        assert not image.root_exists(f"/usr/lib/coffer-test/{name}"), name
    assert not image.root_exists("/usr/lib/coffer-test")
    for folder in ("/etc/systemd/system", "/etc/systemd/system/multi-user.target.wants", "/usr/lib/coffer"):
        assert not [n for n in image.root_listing(folder) if "test" in n or "vtpm" in n], folder
    for unit in UNITS:
        assert "vtpm" not in image.root_file(f"/etc/systemd/system/{unit}")


def test_device_service_installed_in_the_venv(image: Image) -> None:
    site = "/opt/coffer/lib/python3.13/site-packages"
    listing = image.root_listing(site)
    for package in ("device_os", "protocol", "cryptography", "fastapi", "uvicorn", "uvloop", "httptools"):
        assert package in listing, package
    assert "center" not in listing
    assert "terminal_cli" not in listing
    assert "include-system-site-packages = true" in image.root_file("/opt/coffer/pyvenv.cfg")
    # tpm2-pytss from Debian (no aarch64 build in the image)
    assert "tpm2_pytss" in image.root_listing("/usr/lib/python3/dist-packages")


def initrd_listing(initrd: bytes) -> list[str]:
    """Names in an initramfs: an uncompressed (early) cpio, then a compressed one, as lsinitramfs reads it."""
    names: list[str] = []
    end = initrd.find(b"TRAILER!!!")
    parts = [initrd] if end < 0 else [initrd, initrd[end + 10 :].lstrip(b"\0")]  # cpio stops at a trailer
    decompressors = {b"\x1f\x8b": ["gzip", "-dc"], b"\x28\xb5": ["zstd", "-dc"], b"\xfd7": ["xz", "-dc"]}
    for part in parts:
        if not part:
            continue
        command = decompressors.get(part[:2])
        if command is not None:
            part = subprocess.run(command, input=part, capture_output=True, check=True).stdout
        listing = subprocess.run(
            ["cpio", "-t", "--quiet"], input=part, capture_output=True, check=True
        ).stdout
        names += listing.decode().splitlines()
    return names


def test_initrd_carries_the_sd_card_drivers(image: Image) -> None:
    """MODULES=list (the slim initrd) must still carry what mounts the root on the boards and in QEMU."""
    initrd = next(n for n in image.boot_listing() if n.startswith("initrd.img"))
    data = image.boot_file(initrd)
    names = initrd_listing(data)
    for module in (
        "sdhci-iproc.ko",
        "bcm2835.ko",
        "gpio-regulator.ko",
        "ext4.ko",
        "virtio_blk.ko",
        "virtio_mmio.ko",
    ):
        assert any(n.rsplit("/", 1)[-1].startswith(module) for n in names), module
    assert len(data) < 40 * 1024 * 1024  # MODULES=most is several times larger
