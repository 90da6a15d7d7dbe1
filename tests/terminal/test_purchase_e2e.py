"""End to end on loopback: the real center (sample catalog, swtpm's EK CA), the real device service on swtpm,
and `terminal_cli` as the user runs it. The three-namespace USB link version is
tests/integration/test_terminal_link.py.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.terminal.conftest import Shop
from tests.terminal.support import PIN, Cli

pytestmark = [pytest.mark.swtpm, pytest.mark.integration]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _prepaid(shop: Shop) -> int:
    return int(shop.cli.json("wallet")["purses"]["prepaid"].get("JPY", 0))


def test_every_media_kind_and_a_bundle(shop: Shop, tmp_path: Path) -> None:
    cli, center = shop.cli, shop.center
    (tmp_path / "a.txt").write_text("first file of the bundle\n")
    (tmp_path / "b.txt").write_text("second file\n")
    bundle = center.add_item([tmp_path / "a.txt", tmp_path / "b.txt"], "Two notes", 120)
    catalog = cli.json("catalog")
    kinds = {i["media_kind"] for i in catalog}
    assert {"image", "text", "audio", "video", "pdf"} <= kinds
    assert any(i["bundle"] for i in catalog)
    total = sum(i["price"]["amount"] for i in catalog)

    start = _prepaid(shop)
    code = center.credit(shop.device_id, total)
    redeemed = cli.json("redeem", code)
    assert redeemed["kind"] == "prepaid"
    assert _prepaid(shop) == start + total

    for n, item in enumerate(catalog):
        mode = "deferred" if n % 2 else "now"
        out = tmp_path / f"opened-{item['item_id']}"
        bought = shop.purchase(item["item_id"], "--mode", mode, "-o", str(out))
        assert bought["order_id"].startswith("ord")
        assert bought["opened"]["sha256"] == item["content_sha256"]
        assert _sha256(out) == item["content_sha256"]
        assert len(bought["debits"]) == 1
        assert bought["debits"][0]["amount"] == item["price"]["amount"]

    assert _prepaid(shop) == start  # every price debited once
    library = cli.json("library")
    assert sorted(i["item_id"] for i in library) == sorted(i["item_id"] for i in catalog)
    receipts = cli.json("receipts")
    assert {r["state"] for r in receipts} == {"paid"}
    assert all(r["receipt_on_device"] for r in receipts)
    doctor = {c["check"]: c for c in cli.json("doctor")}
    for name in ("device", "unlocked here", "enrolled", "center", "center root", "center token"):
        assert doctor[name]["status"] == "ok", doctor[name]
    assert doctor["unfinished purchases"]["status"] == "ok"
    synced = cli.json("sync")
    assert synced["payments_relayed"] == []
    assert synced["statement"]["matches"] is True, synced["statement"]

    # open to stdout, bundle included (a ustar archive)
    opened = cli.run("open", bundle, "-o", "-")
    assert opened.returncode == 0
    assert b"first file of the bundle" in opened.stdout.encode()

    # already owned: refused before the center hears anything (no order, no hold)
    cli.fails(30, "purchase", bundle)
    assert _prepaid(shop) == start

    deleted = cli.json("delete", bundle)
    assert deleted["deleted"] is True
    cli.fails(4, "open", bundle, "-o", str(tmp_path / "gone"))


def test_money_and_trust_failures_have_their_exit_codes(shop: Shop, tmp_path: Path) -> None:
    cli, center = shop.cli, shop.center
    catalog = cli.json("catalog")
    dearest = max(catalog, key=lambda i: i["price"]["amount"])
    balance = _prepaid(shop)
    assert dearest["price"]["amount"] > 0

    # insufficient funds: spend down, then the center refuses the order (402) and nothing changes
    cheap = sorted(catalog, key=lambda i: i["price"]["amount"])
    bought = set()
    for item in cheap:
        if _prepaid(shop) < item["price"]["amount"]:
            break
        shop.purchase(item["item_id"])
        bought.add(item["item_id"])
    poor = next(i for i in cheap if i["item_id"] not in bought and i["price"]["amount"] > _prepaid(shop))
    before = _prepaid(shop)
    failed = cli.fails(29, "purchase", poor["item_id"])
    assert "hint: redeem" in failed.stderr
    assert _prepaid(shop) == before
    assert balance >= before

    # the center's device token: absent here (32), or unknown to the center (28)
    token_dir = cli.state_dir / "centers"
    (token_file,) = token_dir.rglob(f"device-{shop.device_id}.token")
    token = token_file.read_text()
    token_file.write_text("x" * 43)
    cli.fails(28, "purchase", poor["item_id"])
    token_file.unlink()
    cli.fails(32, "purchase", poor["item_id"])
    token_file.write_text(token)
    token_file.chmod(0o600)

    # revoked: the center stops orders
    center.admin("device", "revoke", shop.device_id)
    cli.fails(27, "purchase", poor["item_id"])

    # the center is down
    center.stop()
    down = cli.fails(22, "catalog")
    assert "unreachable" in down.stderr


def test_not_enrolled_and_unknown_device(center, board, cli: Cli) -> None:  # type: ignore[no-untyped-def]
    cli.env |= {"COFFER_CENTER": center.url, "COFFER_DEVICE": board.url, "COFFER_PIN": PIN}
    cli.json("device", "setup")
    item = cli.json("catalog")[0]["item_id"]
    cli.fails(32, "purchase", item)  # never enrolled from this PC
    assert not list(cli.state_dir.rglob("purchases/*/*.json"))  # nothing recorded before the refusal
    assert json.loads(cli.run("--json", "doctor").stdout)


def test_tampered_device_refuses(shop: Shop) -> None:
    cli = shop.cli
    item = cli.json("catalog")[0]
    shop.purchase(item["item_id"])
    shop.board.stop()
    state = shop.board.data / "state"
    raw = bytearray(state.read_bytes())
    raw[-1] ^= 0x01  # one bit of the encrypted body
    state.write_bytes(bytes(raw))
    shop.board.start()
    cli.fails(26, "wallet")
    health = cli.json("device", "status")
    assert health["tampered"] is True


def test_browsing_needs_no_device(center, cli: Cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cli.env |= {"COFFER_CENTER": center.url}
    found = cli.json("catalog", "--search", "SHAPES")
    assert [i["title"] for i in found] == ["Moving shapes"]
    assert cli.json("catalog", "--search", "no such thing") == []
    item = found[0]
    detail = cli.json("show", item["item_id"])
    assert detail["files"][0]["name"] == "shapes.mp4"
    preview = cli.json("preview", item["item_id"], "-o", str(tmp_path))
    assert preview["verified"] is True
    assert Path(preview["path"]).parent == tmp_path
    assert _sha256(Path(preview["path"])) == detail["previews"][0]["sha256"]
    cli.fails(2, "preview", item["item_id"], "-n", "7")
    cli.fails(4, "show", "itm_aaaaaaaaaaaaaaaa")
    human = cli.run("catalog")
    assert "Moving shapes" in human.stdout
    checks = {c["check"]: c for c in cli.json("doctor", env={"COFFER_DEVICE": "http://127.0.0.1:9"})}
    assert checks["center"]["status"] == "ok"
    assert checks["device"]["status"] == "fail"
    assert "unreachable" in checks["device"]["detail"]
