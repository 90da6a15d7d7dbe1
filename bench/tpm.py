"""TPM benchmark: milliseconds per TPM operation on swtpm, beside a software reference, in one run.

    python -m bench.tpm [--rounds N] [--primaries M]

Prints one JSON object per line. For each operation:
- `tpm_ms`: the TPM command alone, timed at the TCTI (transmit to response) by the adapter's counting TCTI;
- `adapter_ms`: the adapter call end to end (worker-thread hop, marshalling, and every command it sends);
- `software_ms`: the same job done in software with cryptography (or a file, for the counter);
each as {"median", "p90"}. Then one line for the purchase hot path (ECDH_ZGen + Sign + NV_Increment + the
NV_Read with which the commit checks the counter, docs/device-purchases.md).
swtpm runs on this host, so these are host numbers: a discrete TPM is 10-100x slower (FACTS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bench._support import latency_ms
from device_os.tpm import Tpm
from scripts.swtpm import Swtpm, copy_state, provision_template

PIN = b"135790"


def _time(fn: Callable[[], object], rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def _tcti_times(tpm: Tpm, command: str) -> list[float]:
    return [seconds for name, seconds in tpm.command_times() if name == command]


def _software(rounds: int, directory: Path) -> dict[str, list[float]]:
    key = ec.generate_private_key(ec.SECP256R1())
    peer = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    nonce = os.urandom(12)
    sealed = aead.encrypt(nonce, os.urandom(32), None)
    counter = directory / "counter"
    counter.write_bytes(bytes(8))
    value = [0]

    def nv_increment() -> None:
        value[0] += 1
        with counter.open("r+b") as f:
            f.write(value[0].to_bytes(8, "big"))
            f.flush()
            os.fsync(f.fileno())

    return {
        "ecdh_zgen": _time(lambda: key.exchange(ec.ECDH(), peer), rounds),
        "sign": _time(lambda: key.sign(b"payment", ec.ECDSA(hashes.SHA256())), rounds),
        "nv_increment": _time(nv_increment, rounds),
        "nv_read": _time(counter.read_bytes, rounds),
        "load": _time(lambda: serialization.load_der_private_key(der, None), rounds),
        "unseal": _time(lambda: aead.decrypt(nonce, sealed, None), rounds),
        "certify": _time(lambda: key.sign(bytes(120), ec.ECDSA(hashes.SHA256())), rounds),
        "create_primary": _time(lambda: ec.generate_private_key(ec.SECP256R1()), rounds),
    }


def run(rounds: int, primaries: int, emit: Callable[[dict[str, Any]], None]) -> None:
    with tempfile.TemporaryDirectory(prefix="coffer-bench-tpm-") as tmp:
        base = Path(tmp)
        template = provision_template(base / "template")
        sw = Swtpm(copy_state(template, base / "tpm")).start()
        adapter: dict[str, list[float]] = {}
        tcti: dict[str, list[float]] = {}
        try:
            tpm = Tpm.open(sw.tcti)
            try:
                keys = tpm.provision(None)
                kem_key, payment = tpm.create_kem_key(PIN), tpm.create_payment_key(PIN)
                dek = tpm.seal(os.urandom(32), PIN)
                tpm.unseal(dek, PIN)  # the first DA-protected use after start costs a TPM_RC_RETRY: not timed
                peer = ec.generate_private_key(ec.SECP256R1()).public_key()

                # Cold operations first, with no hot keys loaded (each is Load + command + FlushContext).
                tpm.command_times(clear=True)
                adapter["unseal"] = _time(lambda: tpm.unseal(dek, PIN), rounds)
                adapter["certify"] = _time(lambda: tpm.certify(keys.ak, kem_key, b"nonce", pin=PIN), rounds)
                tcti["unseal"] = _tcti_times(tpm, "Unseal")
                tcti["certify"] = _tcti_times(tpm, "Certify")
                tcti["load"] = _tcti_times(tpm, "Load")

                kem, payer = tpm.load_hot_keys(kem_key, payment, PIN)
                tpm.counter_read()
                tpm.command_times(clear=True)
                adapter["ecdh_zgen"] = _time(lambda: kem.exchange(ec.ECDH(), peer), rounds)
                adapter["sign"] = _time(lambda: payer.sign(b"payment"), rounds)
                adapter["nv_increment"] = _time(tpm.counter_increment, rounds)
                adapter["nv_read"] = _time(tpm.counter_read, rounds)
                for op, command in (
                    ("ecdh_zgen", "ECDH_ZGen"),
                    ("sign", "Sign"),
                    ("nv_increment", "NV_Increment"),
                    ("nv_read", "NV_Read"),
                ):
                    tcti[op] = _tcti_times(tpm, command)

                def purchase() -> None:
                    kem.exchange(ec.ECDH(), peer)
                    payer.sign(b"payment")
                    tpm.counter_increment()
                    tpm.counter_read()

                before = tpm.commands
                hot = _time(purchase, rounds)
                hot_commands = (tpm.commands - before) / rounds
            finally:
                tpm.close()
        finally:
            sw.kill()

        # CreatePrimary (the SRK) happens once per TPM at provisioning: time it on fresh copies.
        tcti["create_primary"], adapter["create_primary"] = [], []
        for i in range(primaries):
            fresh = Swtpm(copy_state(template, base / f"fresh{i}")).start()
            try:
                with Tpm.open(fresh.tcti) as tpm:
                    start = time.perf_counter()
                    tpm.provision(None)
                    adapter["create_primary"].append(time.perf_counter() - start)
                    tcti["create_primary"] += _tcti_times(tpm, "CreatePrimary")
            finally:
                fresh.kill()

        software = _software(rounds, base)
    for op in ("ecdh_zgen", "sign", "nv_increment", "nv_read", "load", "unseal", "certify", "create_primary"):
        line: dict[str, Any] = {
            "bench": "tpm",
            "op": op,
            "n": len(tcti[op]),
            "tpm_ms": latency_ms(tcti[op], tail=90, digits=4),
        }
        if op in adapter:
            line["adapter_ms"] = latency_ms(adapter[op], tail=90, digits=4)
        line["software_ms"] = latency_ms(software[op], tail=90, digits=4)
        if op == "create_primary":
            line["note"] = "adapter_ms = a whole provision() (SRK, AK, counter, DA)"
        elif op in ("unseal", "certify"):
            line["note"] = "adapter_ms includes Load and FlushContext"
        emit(line)
    emit(
        {
            "bench": "tpm",
            "op": "purchase_hot_path",
            "n": rounds,
            "commands": hot_commands,
            "adapter_ms": latency_ms(hot, tail=90, digits=4),
        }
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.tpm", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--primaries", type=int, default=10)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.primaries < 1:
        parser.error("--rounds and --primaries must be >= 1")
    run(args.rounds, args.primaries, lambda line: print(json.dumps(line), flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
