"""Boot the built image in QEMU and use the board over a real USB gadget link (DESIGN.md "Image").

The guest runs the production units unchanged: grow-data, provisioning (its TPM: the host's swtpm through
tpm_vtpm_proxy and a test-only forwarder), the configfs gadget on dummy_hcd, systemd-networkd's DHCP server on
the gadget's bridge, the device service. The "PC" is the host side of that USB link in its own network
namespace inside the guest; the test's requests are relayed into that namespace, so every byte crosses USB
(NCM first, then ECM once the PC side picks configuration 2). On the host, in a namespace of the test's own, a
real center and real `terminal_cli` processes: setup, enrollment, a prepaid credit, a purchase opened and
checked against the catalog's SHA-256 — once with the AEAD the board picks on QEMU's CPU (AES-256-GCM), once
with ChaCha20-Poly1305 forced, as a Pi 4 / Zero 2 W would pick it.

What this does not exercise (the Pi's boot firmware and config.txt, the SPI TPM, the real OTG port) is checked
statically in test_static.py and listed in README.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.image.artifacts import REPO, Image
from tests.image.qemu import Guest, booted, network_namespace
from tests.image.shop import Pc, center
from tests.support.swtpm import SwtpmTemplate

# two boots under TCG on a shared 2-core machine: beyond the suite's 600 s default per test
pytestmark = [pytest.mark.qemu, pytest.mark.integration, pytest.mark.timeout(2400)]

PIN = "246813"
BOOT_SECONDS = 900  # TCG on a shared 2-core machine: generous bound, not a timing assertion


def ready(guest: Guest) -> bool:
    return guest.board("GET", "/v1/health").status_code == 200


def link(guest: Guest, driver: str) -> dict[str, Any] | None:
    state = guest.control("GET", "/link").json()
    if state.get("error"):
        raise AssertionError(f"PC side of the USB link: {state['error']}\n{guest.diagnostics()}")
    info = state.get("link")
    return info if info and info["driver"] == driver else None


def record(name: str, values: dict[str, Any]) -> None:
    """Boot numbers for docs/image.md (test-artifacts/, not part of any assertion)."""
    folder = REPO / "test-artifacts"
    folder.mkdir(exist_ok=True)
    (folder / f"image-boot-{name}.json").write_text(
        json.dumps(values, indent=1, sort_keys=True), encoding="utf-8"
    )


def run_the_board(image: Image, template: SwtpmTemplate, workdir: Path, aead: str | None) -> dict[str, Any]:
    with network_namespace() as namespace, center(namespace, template.ca_bundle, workdir) as shop:
        conf = (
            f"COFFER_DEVICE_PINNED_ROOT_FINGERPRINT={shop.root_fingerprint}\n"  # as `make image CENTER_ROOT=`
        )
        if aead is not None:
            conf += f"COFFER_DEVICE_AEAD={aead}\n"
        with booted(image, template, workdir, namespace, conf_extra=conf) as guest:
            # the PC side's link first (it fails fast with its reason), then the API through it
            guest.wait_for("ncm-link", lambda: link(guest, "cdc_ncm"), BOOT_SECONDS)
            guest.wait_for("api-ready", lambda: ready(guest), 300)
            identity = use_the_board(guest, Pc(namespace, workdir / "pc", shop, PIN), workdir)
            stop_in_order(guest)
            return {"identity": identity, "seconds_to": guest.timings, "link_rebinds": guest.link_rebinds}


def use_the_board(guest: Guest, pc: Pc, workdir: Path) -> dict[str, Any]:
    """The PC's whole story over the USB link, then the board's own state as built."""
    ncm = link(guest, "cdc_ncm")
    assert ncm is not None
    guest.link_rebinds["ncm"] = ncm["rebinds"]
    assert ncm["carrier"] == "1"
    assert ncm["address"] == "192.168.7.2/30"  # leased from the board's DHCP server
    assert ncm["dhcp_server"] == "192.168.7.1"
    assert 3 not in ncm["dhcp_options"]  # no router: the PC keeps its own default route
    assert 6 not in ncm["dhcp_options"]  # no DNS

    assert guest.board("GET", "/v1/identity").status_code == 409  # before setup
    # the Host check holds on the board: another name for the same address is refused
    assert guest.board("GET", "/v1/health", headers={"Host": "localhost:8470"}).status_code in (400, 421)

    pc.ok("device", "status")
    pc.ok("device", "setup")
    assert pc.run("device", "unlock", extra={"COFFER_PIN": "000000"}).returncode == 24  # wrong PIN
    pc.ok("device", "unlock")
    pc.ok("enroll")
    device_id = pc.ask("device", "status")["device_id"]
    assert ncm["serial"] == device_id  # the gadget's USB serial number is the device_id
    pc.ok("redeem", pc.issue_credit(device_id, 1000))
    item = next(i for i in pc.ask("catalog") if i["title"] == "Moving shapes")
    opened = workdir / "opened.mp4"
    pc.ok("purchase", item["item_id"], "-o", str(opened))
    assert hashlib.sha256(opened.read_bytes()).hexdigest() == item["content_sha256"]
    guest.timings["purchased"] = time.monotonic() - guest.started

    identity = guest.board("GET", "/v1/identity")
    assert identity.status_code == 200, identity.text
    assert identity.json()["device_id"] == device_id

    # the board as built: read-only root, data partition grown to the end of the (grown) disk
    mounts = {line.split()[1]: line.split() for line in guest.control("GET", "/mounts").text.splitlines()}
    assert "ro" in mounts["/"][3].split(",")
    assert mounts["/var/lib/coffer"][0].startswith("/dev/vda3")
    assert guest.control("GET", "/data-size").json()["bytes"] > 400 * 1024 * 1024  # 64 MiB as built

    # CDC-ECM (macOS's configuration): the PC side picks configuration 2, the same board answers
    assert guest.control("POST", "/usb-config/2").status_code == 200
    ecm = guest.wait_for("ecm-link", lambda: link(guest, "cdc_ether"), 240)
    guest.link_rebinds["ecm"] = ecm["rebinds"]
    assert ecm["address"] == "192.168.7.2/30"
    assert ecm["serial"] == device_id
    assert ecm["mac"] == ncm["mac"]  # the PC's end keeps its MAC, so it keeps its lease
    assert item["item_id"] in json.dumps(pc.ask("library"))
    pc.ok("wallet")
    return dict(identity.json())


def stop_in_order(guest: Guest) -> None:
    """Stopping the unit locks the device and sends TPM2_Shutdown(STATE): the journal says so."""
    assert guest.control("POST", "/stop-device").json()["rc"] == 0
    assert "TPM shut down in order" in guest.control("GET", "/journal").text


def test_boot_and_buy_over_usb(image: Image, swtpm_template: SwtpmTemplate, tmp_path: Path) -> None:
    result = run_the_board(image, swtpm_template, tmp_path, aead=None)
    assert result["identity"]["aead"] == "aes-256-gcm"  # QEMU's cortex-a72 has the aes flag
    record(
        "default",
        {key: result[key] for key in ("seconds_to", "link_rebinds")} | {"cpu_count": os.cpu_count()},
    )


def test_boot_and_buy_with_chacha20_forced(
    image: Image, swtpm_template: SwtpmTemplate, tmp_path: Path
) -> None:
    """A Pi 4 / Zero 2 W has no AES instructions and picks ChaCha20-Poly1305; QEMU's CPU has them, so the
    choice is forced through coffer.conf on the boot partition."""
    result = run_the_board(image, swtpm_template, tmp_path, aead="chacha20-poly1305")
    assert result["identity"]["aead"] == "chacha20-poly1305"
    record(
        "chacha", {key: result[key] for key in ("seconds_to", "link_rebinds")} | {"cpu_count": os.cpu_count()}
    )
