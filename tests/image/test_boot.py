"""Boot the built image in QEMU and use the board over a real USB gadget link (DESIGN.md "Image").

The guest runs the production units unchanged: grow-data, provisioning (its TPM: the host's swtpm through
tpm_vtpm_proxy and a test-only forwarder), the configfs gadget on dummy_hcd, systemd-networkd's DHCP server on
the gadget's bridge, the device service. The "PC" is the host side of that USB link in its own network
namespace inside the guest; the test's requests are relayed into that namespace, so every byte crosses USB
(NCM first, then ECM once the PC side picks configuration 2).

What this does not exercise (the Pi's boot firmware and config.txt, the SPI TPM, the real OTG port) is checked
statically in test_static.py and listed in README.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.image.artifacts import REPO, Image
from tests.image.qemu import Guest, booted
from tests.support.swtpm import SwtpmTemplate

pytestmark = [pytest.mark.qemu, pytest.mark.integration]

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


def use_the_board(guest: Guest) -> dict[str, Any]:
    """setup, unlock, identity through the USB link; the link (DHCP, carrier, serial) as the PC sees it."""
    guest.wait_for("api-ready", lambda: ready(guest), BOOT_SECONDS)
    ncm = guest.wait_for("ncm-link", lambda: link(guest, "cdc_ncm"), 120)
    assert ncm["carrier"] == "1"
    assert ncm["address"] == "192.168.7.2/30"  # leased from the board's DHCP server
    assert ncm["dhcp_server"] == "192.168.7.1"
    assert 3 not in ncm["dhcp_options"]  # no router: the PC keeps its own default route
    assert 6 not in ncm["dhcp_options"]  # no DNS

    assert guest.board("GET", "/v1/identity").status_code == 409  # before setup
    # the Host check holds on the board: another name for the same address is refused
    assert guest.board("GET", "/v1/health", headers={"Host": "localhost:8470"}).status_code in (400, 421)
    setup = guest.board("POST", "/v1/setup", json={"pin": PIN})
    assert setup.status_code == 201, setup.text
    device_id = setup.json()["device_id"]
    assert ncm["serial"] == device_id  # the gadget's serial number is the device_id
    wrong = guest.board("POST", "/v1/unlock", json={"pin": "000000"})
    assert wrong.status_code == 401, wrong.text
    unlock = guest.board("POST", "/v1/unlock", json={"pin": PIN})
    assert unlock.status_code == 200, unlock.text
    token = unlock.json()["token"]
    identity = guest.board("GET", "/v1/identity")
    assert identity.status_code == 200, identity.text
    assert identity.json()["device_id"] == device_id
    wallet = guest.board("GET", "/v1/wallet", headers={"Authorization": f"Bearer {token}"})
    assert wallet.status_code == 200, wallet.text

    # the board as built: read-only root, data partition grown to the end of the (grown) disk
    mounts = {line.split()[1]: line.split() for line in guest.control("GET", "/mounts").text.splitlines()}
    assert "ro" in mounts["/"][3].split(",")
    assert mounts["/var/lib/coffer"][0].startswith("/dev/vda3")
    assert guest.control("GET", "/data-size").json()["bytes"] > 400 * 1024 * 1024  # 64 MiB as built

    # CDC-ECM (macOS's configuration): the PC side picks configuration 2, the same board answers
    assert guest.control("POST", "/usb-config/2").status_code == 200
    ecm = guest.wait_for("ecm-link", lambda: link(guest, "cdc_ether"), 120)
    assert ecm["address"] == "192.168.7.2/30"
    assert ecm["serial"] == device_id
    assert ecm["mac"] != ncm["mac"]
    assert guest.board("GET", "/v1/identity").json()["device_id"] == device_id
    return identity.json()


def stop_in_order(guest: Guest) -> None:
    """Stopping the unit locks the device and sends TPM2_Shutdown(STATE): the journal says so."""
    assert guest.control("POST", "/stop-device").json()["rc"] == 0
    assert "TPM shut down in order" in guest.control("GET", "/journal").text


def test_boot_and_use_over_usb(image: Image, swtpm_template: SwtpmTemplate, tmp_path: Path) -> None:
    with booted(image, swtpm_template, tmp_path) as guest:
        identity = use_the_board(guest)
        assert identity["aead"] == "aes-256-gcm"  # QEMU's cortex-a72 has the aes flag
        stop_in_order(guest)
        record("default", {"seconds_to": guest.timings, "cpu_count": os.cpu_count()})


def test_boot_with_chacha20_forced(image: Image, swtpm_template: SwtpmTemplate, tmp_path: Path) -> None:
    """A Pi 4 / Zero 2 W has no AES instructions: the board runs ChaCha20-Poly1305 there; QEMU has them, so
    the choice is forced through coffer.conf on the boot partition."""
    with booted(
        image, swtpm_template, tmp_path, conf_extra="COFFER_DEVICE_AEAD=chacha20-poly1305\n"
    ) as guest:
        identity = use_the_board(guest)
        assert identity["aead"] == "chacha20-poly1305"
        record("chacha", {"seconds_to": guest.timings, "cpu_count": os.cpu_count()})
