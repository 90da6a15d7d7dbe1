"""device_os.gadget against a temporary directory tree standing in for configfs (no root, no kernel).

What the tree cannot show (the kernel accepting each write, the PC's view of the descriptors) the QEMU boot
test shows on dummy_hcd (tests/image/test_boot.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from device_os import gadget

DEVICE_ID = "dev_" + "abcdefghijklmnopqrstuvwxyz234567"
OTHER_ID = "dev_" + "a" * 32

CONF = """# coffer.conf
COFFER_DEVICE_LISTEN=192.168.7.1:8470
COFFER_DEVICE_LINK_SUBNET="192.168.7.0/30"
COFFER_DEVICE_PINNED_ROOT_FINGERPRINT=
"""


def read(path: Path) -> str:
    return path.read_text(encoding="ascii").strip()


@pytest.fixture
def board(tmp_path: Path) -> dict[str, Path]:
    """A stand-in for configfs, /sys/class/udc with one controller, coffer.conf, the provisioning status."""
    configfs = tmp_path / "usb_gadget"
    configfs.mkdir()
    udc = tmp_path / "udc"
    (udc / "fe980000.usb").mkdir(parents=True)
    conf = tmp_path / "coffer.conf"
    conf.write_text(CONF, encoding="utf-8")
    status = tmp_path / "provision.json"
    status.write_text(json.dumps({"device_id": DEVICE_ID, "phase": "provisioned"}), encoding="utf-8")
    return {
        "configfs": configfs,
        "udc": udc,
        "conf": conf,
        "status": status,
        "networkd": tmp_path / "networkd",
    }


def test_gadget_tree_has_ncm_with_winncm_and_ecm(board: dict[str, Path]) -> None:
    tree = gadget.write_gadget(board["configfs"], DEVICE_ID)
    assert read(tree / "idVendor") == "0x1d6b"
    assert read(tree / "idProduct") == "0x0104"
    assert read(tree / "strings/0x409/serialnumber") == DEVICE_ID
    # a composite with interface associations (Windows loads it without an .inf)
    assert [read(tree / n) for n in ("bDeviceClass", "bDeviceSubClass", "bDeviceProtocol")] == [
        "0xef",
        "0x02",
        "0x01",
    ]
    # configuration 1 = NCM, 2 = ECM, each a link to its function
    assert (tree / "configs/c.1/ncm.usb0").resolve() == (tree / "functions/ncm.usb0").resolve()
    assert (tree / "configs/c.2/ecm.usb1").resolve() == (tree / "functions/ecm.usb1").resolve()
    assert list((tree / "configs/c.1").glob("*.usb*")) == [tree / "configs/c.1/ncm.usb0"]
    # Microsoft OS descriptor: on, vendor code, signature, WINNCM on the NCM interface, pointing at c.1
    assert read(tree / "os_desc/use") == "1"
    assert read(tree / "os_desc/b_vendor_code") == "0xcd"
    assert read(tree / "os_desc/qw_sign") == "MSFT100"
    assert read(tree / "functions/ncm.usb0/os_desc/interface.ncm/compatible_id") == "WINNCM"
    assert (tree / "os_desc/c.1").resolve() == (tree / "configs/c.1").resolve()


def test_macs_are_stable_local_unicast_and_the_pc_keeps_one(board: dict[str, Path]) -> None:
    tree = gadget.write_gadget(board["configfs"], DEVICE_ID)
    board_side = [read(tree / f"functions/{f}/dev_addr") for f in ("ncm.usb0", "ecm.usb1")]
    pc_side = {read(tree / f"functions/{f}/host_addr") for f in ("ncm.usb0", "ecm.usb1")}
    bridge = gadget.derived_mac(DEVICE_ID, "bridge")
    # the PC sees one MAC whichever configuration it picks (one DHCP lease in a /30)
    assert len(pc_side) == 1
    macs = [*board_side, *pc_side, bridge]
    assert len(set(macs)) == 4  # the two bridge ports, the PC, the bridge: all distinct
    for mac in macs:
        first = int(mac.split(":")[0], 16)
        assert first & 0x02, mac  # locally administered
        assert not first & 0x01, mac  # unicast
    # the same device_id gives the same addresses; another device_id other ones
    again = gadget.write_gadget(board["configfs"], DEVICE_ID)
    assert {read(again / "functions/ncm.usb0/host_addr")} == pc_side
    assert gadget.derived_mac(OTHER_ID, "host") not in pc_side


def test_bind_names_and_networkd(board: dict[str, Path]) -> None:
    (board["udc"] / "dummy_udc.0").mkdir()
    tree = gadget.write_gadget(board["configfs"], DEVICE_ID)
    assert gadget.bind(tree, board["udc"]) == "dummy_udc.0"  # sorted: the first controller
    assert read(tree / "UDC") == "dummy_udc.0"
    # the kernel names the interfaces once the gadget is bound; the stand-in names them here
    (tree / "functions/ncm.usb0/ifname").write_text("usb0\n", encoding="ascii")
    (tree / "functions/ecm.usb1/ifname").write_text("usb1\n", encoding="ascii")
    ports = gadget.interface_names(tree)
    assert ports == ["usb0", "usb1"]

    link = gadget.LinkConfig.from_conf(gadget.read_conf(board["conf"]))
    gadget.write_networkd(board["networkd"], gadget.networkd_files(link, DEVICE_ID, ports))
    files = {p.name: p.read_text(encoding="ascii") for p in board["networkd"].iterdir()}
    assert "Kind=bridge" in files["10-coffer0.netdev"]
    assert f"MACAddress={gadget.derived_mac(DEVICE_ID, 'bridge')}" in files["10-coffer0.netdev"]
    assert "Name=usb0 usb1" in files["10-coffer-usb-ports.network"]
    assert "Bridge=coffer0" in files["10-coffer-usb-ports.network"]
    bridge = files["10-coffer0.network"]
    assert "Address=192.168.7.1/30" in bridge
    assert "DHCPServer=yes" in bridge
    assert "EmitRouter=no" in bridge  # the PC must keep its own default route
    assert "PersistLeases=no" in bridge  # else networkd never starts the server on a read-only root
    assert "ConfigureWithoutCarrier=yes" in bridge


def test_up_again_replaces_the_bound_gadget(board: dict[str, Path]) -> None:
    for function, ifname in (("ncm.usb0", "usb0"), ("ecm.usb1", "usb1")):
        folder = board["configfs"] / "coffer/functions" / function
        folder.mkdir(parents=True)
        (folder / "ifname").write_text(ifname, encoding="ascii")
    (board["configfs"] / "coffer/strings/0x409").mkdir(parents=True)
    (board["configfs"] / "coffer/strings/0x409/serialnumber").write_text(OTHER_ID, encoding="ascii")
    (board["configfs"] / "coffer/UDC").write_text("fe980000.usb\n", encoding="ascii")

    with pytest.raises(gadget.GadgetError, match="no network interface"):
        # the old tree is removed first, so the stand-in's pre-made ifnames are gone with it
        gadget.up(
            board["conf"],
            board["status"],
            root=board["configfs"],
            udc_class=board["udc"],
            networkd=board["networkd"],
        )
    assert read(board["configfs"] / "coffer/strings/0x409/serialnumber") == DEVICE_ID


def test_down_removes_the_tree(board: dict[str, Path]) -> None:
    tree = gadget.write_gadget(board["configfs"], DEVICE_ID)
    gadget.bind(tree, board["udc"])
    gadget.remove_gadget(board["configfs"])
    assert not tree.exists()
    gadget.remove_gadget(board["configfs"])  # nothing there: no error


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ("COFFER_DEVICE_LINK_SUBNET=192.168.7.0/30\n", "COFFER_DEVICE_LISTEN"),
        ("COFFER_DEVICE_LISTEN=192.168.7.1:8470\n", "COFFER_DEVICE_LINK_SUBNET"),
        ("COFFER_DEVICE_LISTEN=192.168.8.1:8470\nCOFFER_DEVICE_LINK_SUBNET=192.168.7.0/30\n", "inside"),
        ("COFFER_DEVICE_LISTEN=192.168.7.0:8470\nCOFFER_DEVICE_LINK_SUBNET=192.168.7.0/30\n", "host address"),
        ("COFFER_DEVICE_LISTEN=192.168.7.1:8470\nCOFFER_DEVICE_LINK_SUBNET=192.168.7.0/31\n", "/30"),
        ("COFFER_DEVICE_LISTEN=192.168.7.1\nCOFFER_DEVICE_LINK_SUBNET=192.168.7.0/30\n", "IPv4:PORT"),
        ("COFFER_DEVICE_LISTEN=[fe80::1]:8470\nCOFFER_DEVICE_LINK_SUBNET=192.168.7.0/30\n", "IPv4"),
        ("garbage line\n", "line 1"),
    ],
)
def test_bad_config_is_refused_before_configfs_is_touched(
    board: dict[str, Path], conf: str, message: str
) -> None:
    board["conf"].write_text(conf, encoding="utf-8")
    with pytest.raises(gadget.GadgetError, match=message):
        gadget.up(
            board["conf"],
            board["status"],
            root=board["configfs"],
            udc_class=board["udc"],
            networkd=board["networkd"],
        )
    assert list(board["configfs"].iterdir()) == []
    assert not board["networkd"].exists()


@pytest.mark.parametrize("status", ["", "{}", '{"device_id": null}', '{"device_id": "dev_UPPER"}', "[1]"])
def test_no_device_id_no_gadget(board: dict[str, Path], status: str) -> None:
    board["status"].write_text(status, encoding="utf-8")
    with pytest.raises(gadget.GadgetError, match=r"device_id|provisioning status"):
        gadget.up(
            board["conf"],
            board["status"],
            root=board["configfs"],
            udc_class=board["udc"],
            networkd=board["networkd"],
        )
    assert list(board["configfs"].iterdir()) == []


def test_no_udc_is_a_clear_error(board: dict[str, Path]) -> None:
    (board["udc"] / "fe980000.usb").rmdir()
    with pytest.raises(gadget.GadgetError, match="no USB device controller"):
        gadget.up(
            board["conf"],
            board["status"],
            root=board["configfs"],
            udc_class=board["udc"],
            networkd=board["networkd"],
        )


def test_cli_exit_code_and_one_line(board: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    board["status"].unlink()
    code = gadget.main(["up", "--config", str(board["conf"]), "--status", str(board["status"])])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("device_os.gadget: no provisioning status")
    assert err.count("\n") == 1
