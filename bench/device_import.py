"""Import throughput of POST /v1/purchases against a same-run reference without HTTP and TPM.

    python -m bench.device_import [--sizes 1,64,512] [--aeads aes-256-gcm,chacha20-poly1305] [--rounds N]

The device is the real `device_os serve` process on a swtpm, on a loopback port; the client uploads a content
stream v1 file from disk with httpx (streamed, never whole in memory, with `Content-Length` as the terminal
sends it: the order fixes the stream's length). The reference does the same work in
this process with no HTTP and no TPM, with the device core's own code (`content.import_stream` into a
`ContentStore` blob): stream decrypt + SHA-256 + re-encrypt under a DEK with the device's AEAD + file write +
fsync + rename + directory fsync, reading the same file. Each case is run `rounds` times (best kept, after
one warm-up purchase).

Prints JSON lines, one per (size, AEAD): {"bench": "device_import", "size_mib", "aead", "import_s",
"reference_s", "import_mib_s", "reference_mib_s", "ratio", "client_cpu_s", "service_cpu_s"} (CPU seconds
of the uploading client and of the service process during the best import), and a summary line with the
fixed per-purchase cost (an empty item's purchase: verify, ECDH_ZGen, Sign, NV_Increment, fsyncs, HTTP).
Goal (issue 7): ratio >= 0.8 at 64 MiB and 512 MiB. Host numbers; a board is slower (FACTS.md).

`DeviceProcess` (the service as a child process: start, SIGTERM, SIGKILL, RSS) is also used by the tests in
tests/device_purchase/.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from bench._support import BenchCenter
from device_os.core.aead import resolve
from device_os.core.content import ContentStore, import_stream
from device_os.core.device import Device
from device_os.settings import DeviceSettings
from protocol import stream
from protocol.keys import public_key_from_jwk
from scripts.swtpm import Swtpm, copy_state, provision_template

ROOT = Path(__file__).resolve().parents[1]
PIN = "246810"
MIB = 1024 * 1024
READY_SECONDS = 60.0
UPLOAD_CHUNK = 256 * 1024
#: Rounds per case at most: each purchase leaves an outbox entry, and the state document (rewritten whole by
#: every commit) should stay about the same size through a run.
MAX_ROUNDS = 12
#: The AEAD the device stores content under (provisioned with the default "auto": AES-256-GCM where the CPU
#: has AES). Whatever the order's AEAD, the device re-encrypts under this one, and so does the reference.
DEVICE_AEAD = resolve(DeviceSettings.model_fields["aead"].default)
FIXED_NOTE = "median POST /v1/purchases of an empty item: verify, ECDH_ZGen, Sign, NV_Increment, fsyncs, HTTP"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def provision(data_dir: Path, tcti: str) -> None:
    """Flow 1 (first boot), in this process; closed with an orderly TPM shutdown."""
    device = Device.open(DeviceSettings(data_dir=data_dir, tcti=tcti))
    try:
        device.provision()
    finally:
        device.close()


class DeviceProcess:
    """`python -m device_os serve` on `tcti` and a free loopback port, as a child process."""

    def __init__(self, data_dir: Path, tcti: str, log: Path) -> None:
        self.data_dir = data_dir
        self.tcti = tcti
        self.log = log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""
        self.device_id = ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, *, extra_env: dict[str, str] | None = None) -> DeviceProcess:
        """Start the service; tests arm faults with `extra_env=tests.support.faults.fault_env(spec)`."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("COFFER_DEVICE_")}
        env |= {
            "COFFER_DEVICE_DATA_DIR": str(self.data_dir),
            "COFFER_DEVICE_TCTI": self.tcti,
            "COFFER_DEVICE_LISTEN": f"127.0.0.1:{self.port}",
            "COFFER_DEVICE_TRUST_FIRST_CENTER": "1",
            "PYTHONPATH": str(ROOT),
            **(extra_env or {}),
        }
        env.pop("NOTIFY_SOCKET", None)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "device_os", "serve"], cwd=ROOT, env=env, stdout=out, stderr=out
            )
        deadline = time.monotonic() + READY_SECONDS
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"device_os serve exited {self.proc.returncode}: {self.log.read_text()}")
            try:
                if httpx.get(self.url + "/v1/health", timeout=5).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("device_os serve did not start")
            time.sleep(0.05)

    def client(self, timeout: float = 600.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def stop(self) -> int:
        """SIGTERM: the service locks and shuts the TPM down in order."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(READY_SECONDS)

    def kill(self) -> int:
        """SIGKILL: a power cut of the service (the TPM stays up unless the caller kills it too)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait(READY_SECONDS)

    def wait_dead(self) -> int:
        assert self.proc is not None
        return self.proc.wait(READY_SECONDS)

    def status(self, field: str) -> int:
        """A /proc/PID/status size field (VmRSS, VmHWM) in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(field)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the service process so far (proc(5): /proc/PID/stat utime, stime)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def reset_peak(self) -> None:
        """Reset VmHWM to the current RSS (proc(5): clear_refs value 5)."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def unlock(self, pin: str = PIN) -> str:
        r = httpx.post(self.url + "/v1/unlock", json={"pin": pin}, timeout=60)
        if r.status_code != 200:
            raise RuntimeError(f"unlock: {r.status_code} {r.text}")
        self.token = r.json()["token"]
        return self.token


def file_chunks(path: Path, size: int = UPLOAD_CHUNK) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(size):
            yield chunk


def ready_device(device: DeviceProcess, center: BenchCenter, funds: int) -> ec.EllipticCurvePublicKey:
    """Set up, unlock, enroll, fund; returns the device's KEM public key."""
    with device.client(60) as client:
        r = client.post("/v1/setup", json={"pin": PIN})
        if r.status_code != 201:
            raise RuntimeError(f"setup: {r.status_code} {r.text}")
        device.unlock()
        identity = client.get("/v1/identity").json()
        r = client.post(
            "/v1/enrollment", json=center.enrollment(identity["device_id"]), headers=device.auth()
        )
        if r.status_code != 200:
            raise RuntimeError(f"enrollment: {r.status_code} {r.text}")
        credit = center.credit(identity["device_id"], funds)
        r = client.post("/v1/credits", json={"credit": credit}, headers=device.auth())
        if r.status_code != 200:
            raise RuntimeError(f"credit: {r.status_code} {r.text}")
        kem: ec.EllipticCurvePublicKey = public_key_from_jwk(identity["kem_jwk"])
        device_id: str = identity["device_id"]
        device.device_id = device_id
        return kem


def make_stream(directory: Path, size: int, aead: str) -> tuple[Path, bytes, str]:
    """A content stream file of `size` random plaintext bytes: (path, Ke, hex SHA-256 of the plaintext)."""
    ke = os.urandom(32)
    path = directory / f"stream-{size}-{aead}.cfs"
    digest = hashlib.sha256()
    block = os.urandom(MIB)

    def plaintext() -> Iterator[bytes]:
        left = size
        counter = 0
        while left:
            piece = counter.to_bytes(8, "big") + block[8 : min(MIB, left)]
            piece = piece[: min(MIB, left)]
            digest.update(piece)
            left -= len(piece)
            counter += 1
            yield piece

    with path.open("wb") as out:
        for chunk in stream.encrypt_iter(plaintext(), ke, aead=aead):
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())  # else its writeback competes with the fsyncs being measured (either side)
    return path, ke, digest.hexdigest()


def reference_import(src: Path, ke: bytes, length: int, out_dir: Path) -> float:
    """The device core's content work without HTTP and TPM, in seconds: `content.import_stream` (decrypt +
    SHA-256 + re-encrypt under a DEK with the device's AEAD) into a `ContentStore` blob (write, fsync,
    rename, directory fsync), reading the same file. The same code as `Wallet.stage`, so the ratio measures
    HTTP, the TPM and the hand-offs, not two implementations of the content work."""
    store = ContentStore(out_dir / "reference")
    started = time.perf_counter()
    writer = store.writer(os.urandom(32), DEVICE_AEAD)
    try:
        import_stream(file_chunks(src), ke, writer, max_length=length)
    except BaseException:
        writer.abort()
        raise
    blob = writer.finish()
    elapsed = time.perf_counter() - started
    store.delete(blob)
    return elapsed


def timed_purchase(
    device: DeviceProcess, client: httpx.Client, order: str, src: Path, mode: str = "now"
) -> tuple[float, float, float]:
    """(wall seconds, client CPU seconds, service CPU seconds) of one purchase."""
    server_cpu = device.cpu_seconds()
    client_cpu = time.process_time()
    started = time.perf_counter()
    r = client.post(
        "/v1/purchases",
        params={"mode": mode},
        content=file_chunks(src),
        headers={
            **device.auth(),
            "Coffer-Order": order,
            "Content-Type": "application/octet-stream",
            "Content-Length": str(src.stat().st_size),
        },
    )
    elapsed = time.perf_counter() - started
    if r.status_code != 200:
        raise RuntimeError(f"purchase: {r.status_code} {r.text}")
    return elapsed, time.process_time() - client_cpu, device.cpu_seconds() - server_cpu


def run(
    sizes_mib: list[int], aeads: list[str], rounds: int, work: Path, min_seconds: float = 0.0
) -> list[dict[str, Any]]:
    template = provision_template(work / "template")
    tpm = Swtpm(copy_state(template, work / "tpm"))
    tpm.start()
    results: list[dict[str, Any]] = []
    device = DeviceProcess(work / "data", tpm.tcti, work / "serve.log")
    try:
        provision(device.data_dir, tpm.tcti)
        device.start()
        center = BenchCenter()
        kem = ready_device(device, center, funds=1_000_000)
        device_id = device.device_id
        with device.client() as client:
            empty_path, empty_ke, empty_sha = make_stream(work, 0, "aes-256-gcm")
            fixed: list[float] = []
            for _ in range(5 + rounds):  # the first purchases warm up the service
                order = center.order(
                    device_id, kem, ke=empty_ke, sha256=empty_sha, length=0, aead="aes-256-gcm"
                )
                fixed.append(timed_purchase(device, client, order, empty_path)[0])
            fixed_s = statistics.median(fixed[5:])
            for aead in aeads:
                for size_mib in sizes_mib:
                    size = size_mib * MIB
                    src, ke, sha = make_stream(work, size, aead)
                    imports: list[tuple[float, float, float]] = []
                    refs: list[float] = []
                    started = time.monotonic()
                    n = 0
                    while n < rounds or (time.monotonic() - started < min_seconds and n < MAX_ROUNDS):
                        # Untimed sync(2) before each side: neither pays for the other's writeback or for the
                        # discard of a deleted file (the disk may be mounted with `discard`). The two sides
                        # take turns going first (the host's disk slows down unevenly over a run). Small
                        # cases get more rounds (`min_seconds`): a few seconds of a busy neighbour on this
                        # shared host would otherwise decide them.
                        n += 1
                        order = center.order(device_id, kem, ke=ke, sha256=sha, length=size, aead=aead)
                        for side in ("ref", "import") if n % 2 else ("import", "ref"):
                            os.sync()
                            if side == "ref":
                                refs.append(reference_import(src, ke, size, work))
                            else:
                                imports.append(timed_purchase(device, client, order, src))
                                # untimed: drop the item so blobs do not pile up on the disk being measured
                                r = client.delete(f"/v1/library/{center.last_item_id}", headers=device.auth())
                                if r.status_code != 204:
                                    raise RuntimeError(f"delete: {r.status_code} {r.text}")
                    src.unlink()
                    (best_import, client_cpu, server_cpu), best_ref = min(imports), min(refs)
                    row = {
                        "bench": "device_import",
                        "size_mib": size_mib,
                        "aead": aead,
                        "device_aead": DEVICE_AEAD,
                        "import_s": round(best_import, 4),
                        "reference_s": round(best_ref, 4),
                        "import_mib_s": round(size_mib / best_import, 1),
                        "reference_mib_s": round(size_mib / best_ref, 1),
                        "ratio": round(best_ref / best_import, 3),
                        "client_cpu_s": round(client_cpu, 3),
                        "service_cpu_s": round(server_cpu, 3),
                        "rounds": n,
                    }
                    if size_mib <= 1:
                        row["import_minus_fixed_s"] = round(best_import - fixed_s, 4)
                    results.append(row)
                    print(json.dumps(row), flush=True)
        summary = {
            "bench": "device_import",
            "case": "fixed_per_purchase",
            "ms": round(fixed_s * 1000, 2),
            "note": FIXED_NOTE,
        }
        results.append(summary)
        print(json.dumps(summary), flush=True)
    finally:
        device.stop()
        tpm.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.device_import", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,64,512", help="item sizes in MiB, comma-separated")
    parser.add_argument("--aeads", default="aes-256-gcm,chacha20-poly1305")
    parser.add_argument("--rounds", type=int, default=4, help="rounds per case, at least")
    parser.add_argument(
        "--min-seconds", type=float, default=4.0, help="more rounds until a case has run this long"
    )
    parser.add_argument("--work", type=Path, help="directory for the TPM, data and streams (default: temp)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    aeads = [a for a in args.aeads.split(",") if a]
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
        run(sizes, aeads, args.rounds, args.work, args.min_seconds)
    else:
        with tempfile.TemporaryDirectory(prefix="coffer-bench-import-") as tmp:
            run(sizes, aeads, args.rounds, Path(tmp), args.min_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
