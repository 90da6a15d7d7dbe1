"""`make demo`: the real thing, step by step — nothing is played.

Stages:
  1. formats   content stream v1 (both AEADs), HPKE content-key wrapping, signed messages
  2. tpm       swtpm + the device's TPM adapter: provision, seal/unseal under a PIN, HPKE opened in the TPM,
               a TPM signature verified in software, the NV counter
  3. center    `center serve` with the sample catalog, trusting the EK certificates of swtpm's local CA
  4. board     a simulated board: `device_os provision` + `serve` in its own network namespace, bound to
               `usb0` of a veth pair (the USB link), its TPM a swtpm on a unix socket
  5. terminal  the commands a user types (scripts/demo_purchase.py): device setup with a PIN, unlock, enroll
               (attested against swtpm's EK CA), redeem a credit code, catalog, purchase (streamed over the
               link into the TPM-backed vault, paid, receipted), open, wallet, receipts, sync

State lives in .demo/ (deleted and recreated each run; COFFER_DEMO_DIR names another directory). Set
COFFER_DEMO_SERVE=1 to keep the center and the board running afterwards, with the commands to try printed.
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
    from protocol.api.catalog import WellKnownCoffer
    from protocol.keys import root_fingerprint
    from protocol.messages import Keyset
    from scripts.swtpm import provision_template

    template = provision_template(
        DEMO_DIR / "tpm-template"
    )  # the board's TPM: EK certificate from a local CA
    SHARED["tpm_template"] = template
    data = DEMO_DIR / "center"
    listen = f"127.0.0.1:{_free_port()}"
    ids = build_demo_catalog(data, listen)
    console.print(f"  sample catalog: {len(ids)} items registered, previews generated")
    log = (DEMO_DIR / "center.log").open("wb")
    serve = ["serve", "--data", str(data), "--listen", listen, "--ek-ca", str(template.ca_bundle)]
    serve += ["--welcome-credit", str(WELCOME_CREDIT)]
    process = subprocess.Popen([sys.executable, "-m", "center", *serve], stdout=log, stderr=subprocess.STDOUT)
    PROCESSES.append(process)
    base = f"http://{listen}"
    _wait_http(f"{base}/v1/health", process)
    known = WellKnownCoffer.model_validate_json(httpx.get(f"{base}/.well-known/coffer").content)
    root = known.root_jwk.public_key()
    if root_fingerprint(root) != known.root_fingerprint:
        raise SystemExit("demo: root fingerprint does not match the root key")
    keyset = jws.verify(known.keyset, Keyset, keys=root, now=int(time.time()))
    console.print(
        f"  center serve on {base}: key set v{keyset.version} signed by root {known.root_fingerprint[:16]}…; "
        f"EK certificates trusted from swtpm's local CA; welcome credit {WELCOME_CREDIT} JPY per TPM"
    )
    console.print(f"  [bold]browse the storefront at {base}/[/] (JSON: {base}/v1/items)")
    SHARED["center_data"], SHARED["center_url"] = data, base


DEMO_PIN = "246810"
WELCOME_CREDIT = 500


def stage_board() -> None:
    from scripts.swtpm import Swtpm, copy_state
    from scripts.usblink import SimulatedLink

    template = SHARED["tpm_template"]
    tpm = Swtpm(copy_state(template, DEMO_DIR / "board-tpm"), transport="unix").start()
    CLEANUP.append(tpm.stop)
    link = SimulatedLink.create()
    CLEANUP.append(link.destroy)
    console.print(
        f"  USB link: veth {link.host_interface} ({link.host_address}) <-> usb0 ({link.board_address}) "
        f"in network namespace {link.namespace}; TPM: swtpm at {tpm.tcti}"
    )
    data = DEMO_DIR / "board-data"
    log = (DEMO_DIR / "device.log").open("wb")
    service = link.start_device(data, tpm.tcti, 8470, stdout=log, stderr=subprocess.STDOUT)
    PROCESSES.append(service)
    base = f"http://{link.board_address}:8470"
    _wait_http(f"{base}/v1/health", service)
    console.print(
        f"  first boot: `device_os provision` (storage key, EK, attestation key, NV counter), then "
        f"`device_os serve` bound to usb0 only: {base}"
    )
    SHARED["board_url"] = base


def stage_terminal() -> None:
    from scripts.demo_purchase import Pc, run

    pc = Pc(console, DEMO_DIR / "pc", SHARED["center_url"], SHARED["board_url"], DEMO_PIN)
    SHARED["pc"] = pc
    run(console, pc=pc, center_data=SHARED["center_data"], work=DEMO_DIR)


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
        "terminal",
        "On the PC: terminal_cli sets the board up, enrolls it, and buys an item",
        stage_terminal,
    ),
]


def _print_try(pc: Any) -> None:
    exports = " ".join(f"{k}={v}" for k, v in pc.environ.items() if k != "COFFER_PIN")
    console.print(
        "the center and the board keep running until Ctrl-C (COFFER_DEMO_SERVE=1). In another shell:\n"
        f"  export {exports}\n"
        f"  .venv/bin/terminal_cli device unlock        # PIN {pc.pin}\n"
        "  .venv/bin/terminal_cli catalog\n"
        "  .venv/bin/terminal_cli purchase ITEM -o FILE\n"
        "  .venv/bin/terminal_cli wallet; .venv/bin/terminal_cli receipts; .venv/bin/terminal_cli doctor"
    )


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
            _print_try(SHARED["pc"])
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
