"""`make demo`: run the most complete real flow that exists, step by step, with real parts.

Stages (real components; the one part played is named in stage 5):
  1. formats   content stream v1 (both AEADs), HPKE content-key wrapping, signed messages
  2. tpm       swtpm + the device's TPM adapter: provision, seal/unseal under a PIN, HPKE opened in the TPM,
               a TPM signature verified in software, the NV counter
  3. center    the center with a sample catalog (image, text, audio, video), served on loopback
  4. board     a simulated board: `device_os serve` in its own network namespace, bound to `usb0` of a veth
               pair (the USB link), its TPM a swtpm on a unix socket; setup, unlock, wallet, the access rules
  5. purchase  a catalog item bought on that board over the link: enrollment, a credit, the order streamed
               into POST /v1/purchases, the payment opened and checked, the receipt, the item opened (Range
               too) and compared with the catalog's bytes. The center's enrollment/order/settlement APIs are
               not built yet: their side is played with `protocol` and the center's own key files
               (scripts/demo_purchase.py)

State lives in .demo/ (deleted and recreated each run; COFFER_DEMO_DIR names another directory). Set
COFFER_DEMO_SERVE=1 to keep the center running after the flows until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from scripts.demo_purchase import expect
from scripts.swtpm import SwtpmError
from scripts.usblink import LinkError

ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = Path(os.environ.get("COFFER_DEMO_DIR") or ROOT / ".demo")  # the test of the demo uses its own
console = Console(highlight=False, soft_wrap=True)


def stage_formats() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from protocol import hpke, jws, stream
    from protocol.messages import Jwk, Keyset

    content = hashlib.shake_256(b"coffer demo content").digest(3 * 1024 * 1024 + 1234)
    for aead in ("aes-256-gcm", "chacha20-poly1305"):
        key = os.urandom(32)
        encrypted = io.BytesIO()
        stream.encrypt_file(io.BytesIO(content), encrypted, key, aead=aead, segment_size=65536)
        encrypted.seek(0)
        decrypted = io.BytesIO()
        stream.decrypt_file(encrypted, decrypted, key)
        ok = decrypted.getvalue() == content
        console.print(
            f"  stream v1 {aead:<18} {len(content):>9} B -> {len(encrypted.getvalue()):>9} B ciphertext, "
            f"round trip {'[green]identical[/]' if ok else '[red]DIFFERENT[/]'}"
        )
        if not ok:
            raise SystemExit("demo: content stream round trip failed")
    device_key = ec.generate_private_key(ec.SECP256R1())
    content_key = os.urandom(32)
    info = hpke.content_key_info("ord_demo")
    wrapped = hpke.seal(device_key.public_key(), content_key, info=info)
    opened = hpke.open(device_key, wrapped, info=info)
    if opened != content_key:
        raise SystemExit("demo: HPKE round trip failed")
    console.print(f"  HPKE content key: {len(wrapped)} B wrapped to a P-256 key, unwrapped [green]equal[/]")
    root = ec.generate_private_key(ec.SECP256R1())
    keyset = Keyset(
        iss="https://center.invalid",
        iat=int(time.time()),
        version=1,
        signing_jwk=Jwk.from_public_key(root.public_key()),
        payment_jwk=Jwk.from_public_key(root.public_key()),
    )
    token = jws.sign(keyset, jws.SoftwareSigner(root))
    jws.verify(token, Keyset, keys=root.public_key(), now=int(time.time()))
    console.print(f"  JWS coffer-keyset: {len(token)} chars, verified under the root key")


def stage_tpm() -> None:
    from scripts.demo_tpm import run

    run(lambda line: console.print(f"  {line}", markup=False))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"demo: {url} exited with {process.returncode} before answering")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"demo: {url} did not answer within {timeout:.0f} s")


def stage_center() -> None:
    from center.demo import build_demo_catalog
    from protocol import jws
    from protocol.api.catalog import ItemList, WellKnownCoffer
    from protocol.keys import root_fingerprint
    from protocol.messages import Keyset

    data = DEMO_DIR / "center"
    listen = f"127.0.0.1:{_free_port()}"
    ids = build_demo_catalog(data, listen)
    console.print(f"  sample catalog: {len(ids)} items registered, previews generated")
    log = (DEMO_DIR / "center.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "center", "serve", "--data", str(data), "--listen", listen],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    PROCESSES.append(process)
    base = f"http://{listen}"
    _wait_http(f"{base}/v1/health", process)
    known = WellKnownCoffer.model_validate_json(httpx.get(f"{base}/.well-known/coffer").content)
    root = known.root_jwk.public_key()
    if root_fingerprint(root) != known.root_fingerprint:
        raise SystemExit("demo: root fingerprint does not match the root key")
    keyset = jws.verify(known.keyset, Keyset, keys=root, now=int(time.time()))
    fingerprint = known.root_fingerprint[:16]
    console.print(f"  /.well-known/coffer: keyset v{keyset.version} verified under root {fingerprint}…")
    catalog = ItemList.model_validate_json(httpx.get(f"{base}/v1/items").content)
    for item in catalog.items:
        previews = ", ".join(f"{p.kind} {p.length} B" for p in item.previews)
        console.print(
            f"  {item.item_id}  {item.title:<16} {item.price!s:>9}  {item.content_length:>9} B"
            f"  previews: {previews}"
        )
    console.print(f"  [bold]browse the storefront at {base}/[/] (JSON: {base}/v1/items)")
    SHARED["center_data"], SHARED["center_listen"] = data, listen


DEMO_PIN = "246810"


def stage_board() -> None:
    from scripts.swtpm import Swtpm, copy_state, provision_template
    from scripts.usblink import SimulatedLink

    template = provision_template(DEMO_DIR / "tpm-template")
    tpm = Swtpm(copy_state(template, DEMO_DIR / "board-tpm"), transport="unix").start()
    CLEANUP.append(tpm.stop)
    link = SimulatedLink.create()
    CLEANUP.append(link.destroy)
    console.print(
        f"  USB link: veth {link.host_interface} ({link.host_address}) <-> usb0 ({link.board_address}) "
        f"in network namespace {link.namespace}; TPM: swtpm at {tpm.tcti}"
    )
    data = DEMO_DIR / "board-data"
    listen = f"{link.board_address}:8470"
    log = (DEMO_DIR / "device.log").open("wb")
    service = link.start_device(data, tpm.tcti, 8470, stdout=log, stderr=subprocess.STDOUT)
    PROCESSES.append(service)
    base = f"http://{listen}"
    _wait_http(f"{base}/v1/health", service)
    with httpx.Client(base_url=base, timeout=30.0) as board:
        health = board.get("/v1/health").json()
        console.print(
            f"  device service on usb0 only: {base}  phase {health['phase']}, {health['device_id']}"
        )
        expect(board.post("/v1/setup", json={"pin": DEMO_PIN}), 201, "setup")
        console.print(
            "  setup: payment key created in the TPM, DEK sealed under the PIN, empty state committed"
        )
        identity = board.get("/v1/identity").json()
        console.print(
            f"  identity: AEAD at rest {identity['aead']}, EK certificate and Certify evidence published"
        )
        wrong = board.post("/v1/unlock", json={"pin": "000000"})
        console.print(
            f"  unlock with a wrong PIN: {wrong.status_code} {wrong.json().get('title')}, "
            f"tries left {wrong.json().get('tries_left')}"
        )
        token = expect(board.post("/v1/unlock", json={"pin": DEMO_PIN}), 200, "unlock").json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        wallet = expect(board.get("/v1/wallet", headers=auth), 200, "wallet").json()
        console.print(
            f"  unlocked: wallet counter {wallet['counter']}, purses {wallet['purses']}, "
            f"enrolled {wallet['enrolled']}"
        )
        refused = board.get("/v1/wallet")
        console.print(f"  without the bearer token: {refused.status_code} {refused.json()['title']}")
        foreign = board.get("/v1/health", headers={"Host": "evil.example"})
        console.print(
            f"  a foreign Host header (DNS rebinding): {foreign.status_code} {foreign.json()['title']}"
        )
        expect(board.post("/v1/lock", headers=auth), 204, "lock")
        console.print(
            f"  locked again: the old token is refused ({board.get('/v1/wallet', headers=auth).status_code})"
        )
    SHARED["board_base"] = base


def stage_purchase() -> None:
    from scripts.demo_purchase import run

    run(
        console,
        center_data=SHARED["center_data"],
        center_listen=SHARED["center_listen"],
        board_base=SHARED["board_base"],
        pin=DEMO_PIN,
        work=DEMO_DIR,
    )


PROCESSES: list[subprocess.Popen[bytes]] = []
SHARED: dict[
    str, Any
] = {}  # what a stage leaves for the next: the center's data and address, the board's URL
CLEANUP: list[Callable[[], None]] = []

STAGES: list[tuple[str, str, Callable[[], None]]] = [
    ("formats", "Wire formats on generated content", stage_formats),
    ("tpm", "The board's TPM (swtpm) through the device's adapter", stage_tpm),
    ("center", "Center with a sample catalog", stage_center),
    (
        "board",
        "A simulated board: the device service behind a USB link (veth + network namespace)",
        stage_board,
    ),
    (
        "purchase",
        "A purchase on the board: catalog item -> order -> USB link -> TPM -> payment -> receipt -> opened",
        stage_purchase,
    ),
]


def main() -> int:
    if DEMO_DIR.exists():
        shutil.rmtree(DEMO_DIR)
    DEMO_DIR.mkdir()
    try:
        for number, (name, title, run) in enumerate(STAGES, 1):
            console.rule(f"[bold]{number}. {title}[/] ({name})")
            started = time.perf_counter()
            try:
                run()
            except (LinkError, SwtpmError) as exc:
                raise SystemExit(f"demo: {name}: {exc}") from exc
            console.print(f"  [dim]{name}: {time.perf_counter() - started:.2f} s[/]")
        console.rule("[bold green]demo finished")
        if os.environ.get("COFFER_DEMO_SERVE") == "1" and PROCESSES:
            console.print("serving until Ctrl-C (COFFER_DEMO_SERVE=1)")
            with contextlib.suppress(KeyboardInterrupt):
                PROCESSES[0].wait()
    finally:
        for process in PROCESSES:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        for undo in reversed(CLEANUP):
            undo()
    return 0


if __name__ == "__main__":
    sys.exit(main())
