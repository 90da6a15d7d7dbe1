"""HPKE benchmark: Coffer's RFC 9180 recipe (protocol.hpke) beside references measured in the same run.

Prints one JSON object per line: {"bench": "hpke", "impl", "op", "payload_bytes", "ops_per_s", "iterations",
"seconds"}. Implementations:
- `coffer`: protocol.hpke.seal / open (a software P-256 key; the device runs this code, DH in its TPM);
- `cryptography`: cryptography's own hpke.Suite(P256, HKDF_SHA256, AES_128_GCM) encrypt / decrypt (Rust);
- `pyhpke`: pyhpke's single-shot context seal / open (pure Python over cryptography);
- `reference`: the primitives alone, the floor under any implementation: `keygen+ecdh` (an ephemeral key and
  one exchange, what seal needs), `ecdh` (one exchange, what open needs), `aes-128-gcm-seal` / `-open` of the
  same payload.

Usage: python -m bench.hpke [--payload-bytes 32] [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from protocol import hpke


def measure(fn: Callable[[], object], seconds: float) -> tuple[int, float]:
    """Run `fn` in batches sized from the rate so far until `seconds` have passed: (iterations, elapsed)."""
    fn()  # warm up
    iterations, batch, elapsed = 0, 1, 0.0
    start = time.perf_counter()
    while elapsed < seconds:
        for _ in range(batch):
            fn()
        iterations += batch
        elapsed = time.perf_counter() - start
        rate = iterations / elapsed if elapsed > 0 else float(batch)
        batch = max(1, min(batch * 2, int(rate * (seconds - elapsed) / 2) + 1))
    return iterations, elapsed


def _cases(payload: bytes) -> list[tuple[str, str, Callable[[], object]]]:
    recipient = ec.generate_private_key(ec.SECP256R1())
    public = recipient.public_key()
    info = hpke.content_key_info("ord_bench")
    sealed = hpke.seal(public, payload, info=info)

    suite = Suite(KEM.P256, KDF.HKDF_SHA256, AEAD.AES_128_GCM)
    suite_sealed = suite.encrypt(payload, public, info=info)

    peer = ec.generate_private_key(ec.SECP256R1()).public_key()
    aes = AESGCM(os.urandom(16))
    nonce = os.urandom(12)
    aes_ct = aes.encrypt(nonce, payload, b"")

    def keygen_and_ecdh() -> bytes:
        return ec.generate_private_key(ec.SECP256R1()).exchange(ec.ECDH(), public)

    cases: list[tuple[str, str, Callable[[], object]]] = [
        ("coffer", "seal", lambda: hpke.seal(public, payload, info=info)),
        ("coffer", "open", lambda: hpke.open(recipient, sealed, info=info)),
        ("cryptography", "seal", lambda: suite.encrypt(payload, public, info=info)),
        ("cryptography", "open", lambda: suite.decrypt(suite_sealed, recipient, info=info)),
        ("reference", "keygen+ecdh", keygen_and_ecdh),
        ("reference", "ecdh", lambda: recipient.exchange(ec.ECDH(), peer)),
        ("reference", "aes-128-gcm-seal", lambda: aes.encrypt(nonce, payload, b"")),
        ("reference", "aes-128-gcm-open", lambda: aes.decrypt(nonce, aes_ct, b"")),
    ]
    try:
        from pyhpke import AEADId, CipherSuite, KDFId, KEMId, KEMKey
    except ImportError:  # pragma: no cover - pyhpke is a project dependency
        return cases
    py_suite = CipherSuite.new(KEMId.DHKEM_P256_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.AES128_GCM)
    py_pk = KEMKey.from_pyca_cryptography_key(public)
    py_sk = KEMKey.from_pyca_cryptography_key(recipient)

    def py_seal() -> bytes:
        enc, ctx = py_suite.create_sender_context(py_pk, info)
        return bytes(enc) + bytes(ctx.seal(payload))

    def py_open() -> bytes:
        ctx = py_suite.create_recipient_context(sealed[: hpke.ENC_SIZE], py_sk, info)
        return bytes(ctx.open(sealed[hpke.ENC_SIZE :]))

    cases += [("pyhpke", "seal", py_seal), ("pyhpke", "open", py_open)]
    return cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hpke", description=__doc__.splitlines()[0])
    parser.add_argument("--payload-bytes", type=int, default=32, help="plaintext size (32: a content key)")
    parser.add_argument("--seconds", type=float, default=1.0, help="measuring time per case")
    args = parser.parse_args(argv)
    if args.payload_bytes < 0 or args.seconds <= 0:
        parser.error("--payload-bytes must be >= 0 and --seconds > 0")
    payload = os.urandom(args.payload_bytes)
    for impl, op, fn in _cases(payload):
        iterations, elapsed = measure(fn, args.seconds)
        record = {
            "bench": "hpke",
            "impl": impl,
            "op": op,
            "payload_bytes": args.payload_bytes,
            "ops_per_s": round(iterations / elapsed, 1),
            "iterations": iterations,
            "seconds": round(elapsed, 3),
        }
        print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
