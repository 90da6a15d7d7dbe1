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
from typing import Any, get_args

import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from bench._support import enroll_and_fund, real_center
from device_os.core.aead import AeadName, resolve
from device_os.core.content import ContentStore, import_stream
from device_os.core.device import Device
from device_os.settings import DeviceSettings
from protocol import stream
from protocol.keys import public_key_from_jwk
from scripts.swtpm import Swtpm, copy_state, provision_template
from tests.support.center import Account, RealCenter

ROOT = Path(__file__).resolve().parents[1]
PIN = "246810"
MIB = 1024 * 1024
READY_SECONDS = 60.0
UPLOAD_CHUNK = 256 * 1024
#: Rounds per case at most: each purchase leaves an outbox entry, and the state document (rewritten whole by
#: every commit) should stay about the same size through a run.
MAX_ROUNDS = 12
#: The AEAD a device provisioned with the default "auto" stores content under (AES-256-GCM where the CPU has
#: AES). The benchmark sets each device's AEAD instead (`--aeads`): the real center's stream uses the AEAD the
#: device declared at enrollment, and the device re-encrypts under the same one, as does the reference.
DEVICE_AEAD = resolve(DeviceSettings.model_fields["aead"].default)
FIXED_NOTE = "median POST /v1/purchases of a 1-byte item: verify, ECDH_ZGen, Sign, NV_Increment, fsyncs, HTTP"


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


def ready_device(
    device: DeviceProcess, center: RealCenter, http: httpx.Client, funds: int
) -> tuple[ec.EllipticCurvePublicKey, Account]:
    """Set up, unlock, enroll through the real center, fund; the device's KEM public key and its account."""
    with device.client(60) as client:
        r = client.post("/v1/setup", json={"pin": PIN})
        if r.status_code != 201:
            raise RuntimeError(f"setup: {r.status_code} {r.text}")
        device.unlock()
        account = enroll_and_fund(center, http, client, device.token, funds)
        identity = client.get("/v1/identity").json()
        kem: ec.EllipticCurvePublicKey = public_key_from_jwk(identity["kem_jwk"])
        device.device_id = account.device_id
        return kem, account


def register(center: RealCenter, directory: Path, size: int) -> str:
    """An item of `size` random-looking bytes at the real center (written to a file, never held whole)."""
    path = directory / f"item-{size}.bin"
    block = os.urandom(MIB)
    with path.open("wb") as out:
        for counter, offset in enumerate(range(0, size, MIB)):
            out.write((counter.to_bytes(8, "big") + block[8:])[: min(MIB, size - offset)])
    try:
        return center.add_file(path, title=f"{size} bytes", price=1)
    finally:
        path.unlink()


def download(account: Account, item_id: str, directory: Path) -> tuple[str, Path]:
    """A fresh order for `item_id` and its content stream, saved to a file (untimed): (order JWS, path)."""
    order = account.order(item_id)
    path = directory / "delivery.cfs"
    with (
        path.open("wb") as out,
        account.center.stream("GET", order["content_url"], headers=account.headers) as r,
    ):
        if r.status_code != 200:
            raise RuntimeError(f"content: {r.status_code}")
        for chunk in r.iter_raw(UPLOAD_CHUNK):
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    token: str = order["order"]
    return token, path


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


def reference_import(
    src: Path, ke: bytes, length: int, out_dir: Path, device_aead: AeadName = DEVICE_AEAD
) -> float:
    """The device core's content work without HTTP and TPM, in seconds: `content.import_stream` (decrypt +
    SHA-256 + re-encrypt under a DEK with the device's AEAD) into a `ContentStore` blob (write, fsync,
    rename, directory fsync), reading the same file. The same code as `Wallet.stage`, so the ratio measures
    HTTP, the TPM and the hand-offs, not two implementations of the content work."""
    store = ContentStore(out_dir / "reference")
    started = time.perf_counter()
    writer = store.writer(os.urandom(32), device_aead)
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
    sizes_mib: list[int], aeads: list[AeadName], rounds: int, work: Path, min_seconds: float = 0.0
) -> list[dict[str, Any]]:
    template = provision_template(work / "template")
    results: list[dict[str, Any]] = []
    with real_center(work, template.ca_bundle) as (center, http):
        fixed_s = 0.0
        for aead in aeads:
            # The center's stream uses the AEAD the device declared at enrollment, which is also the one it
            # stores content under: one device per AEAD, each on its own TPM.
            tpm = Swtpm(copy_state(template, work / f"tpm-{aead}"))
            tpm.start()
            device = DeviceProcess(work / f"data-{aead}", tpm.tcti, work / f"serve-{aead}.log")
            try:
                provision(device.data_dir, tpm.tcti)
                device.start(extra_env={"COFFER_DEVICE_AEAD": aead})
                _, account = ready_device(device, center, http, funds=1_000_000)
                with device.client() as client:
                    if not fixed_s:
                        fixed_s = _fixed_cost(center, account, device, client, rounds, work)
                    for size_mib in sizes_mib:
                        results.append(
                            _case(center, account, device, client, aead, size_mib, rounds, work, min_seconds)
                        )
                        print(json.dumps(results[-1]), flush=True)
            finally:
                device.stop()
                tpm.stop()
    summary = {"bench": "device_import", "case": "fixed_per_purchase", "ms": round(fixed_s * 1000, 2)}
    summary["note"] = FIXED_NOTE
    results.append(summary)
    print(json.dumps(summary), flush=True)
    return results


def _fixed_cost(
    center: RealCenter, account: Account, device: DeviceProcess, client: httpx.Client, rounds: int, work: Path
) -> float:
    """The median purchase of a one-byte item (the center lists no empty item), after 5 warm-up purchases."""
    item = register(center, work, 1)
    fixed: list[float] = []
    for _ in range(5 + rounds):  # the first purchases warm up the service
        order, src = download(account, item, work)
        fixed.append(timed_purchase(device, client, order, src)[0])
        _delete(device, client, item)
    return statistics.median(fixed[5:])


def _delete(device: DeviceProcess, client: httpx.Client, item_id: str) -> None:
    """Untimed: drop the item so blobs do not pile up on the disk being measured (and it can be bought
    again)."""
    r = client.delete(f"/v1/library/{item_id}", headers=device.auth())
    if r.status_code != 204:
        raise RuntimeError(f"delete: {r.status_code} {r.text}")


def _case(
    center: RealCenter,
    account: Account,
    device: DeviceProcess,
    client: httpx.Client,
    aead: AeadName,
    size_mib: int,
    rounds: int,
    work: Path,
    min_seconds: float,
) -> dict[str, Any]:
    size = size_mib * MIB
    item = register(center, work, size)
    ref_src, ref_ke, _ = make_stream(work, size, aead)  # the reference's own stream of the same size and AEAD
    imports: list[tuple[float, float, float]] = []
    refs: list[float] = []
    started = time.monotonic()
    n = 0
    while n < rounds or (time.monotonic() - started < min_seconds and n < MAX_ROUNDS):
        # Untimed sync(2) before each side: neither pays for the other's writeback or for the discard of a
        # deleted file (the disk may be mounted with `discard`). The two sides take turns going first (the
        # host's disk slows down unevenly over a run). Small cases get more rounds (`min_seconds`): a few
        # seconds of a busy neighbour on this shared host would otherwise decide them.
        n += 1
        order, src = download(account, item, work)  # the center's order and stream, untimed
        for side in ("ref", "import") if n % 2 else ("import", "ref"):
            os.sync()
            if side == "ref":
                refs.append(reference_import(ref_src, ref_ke, size, work, aead))
            else:
                imports.append(timed_purchase(device, client, order, src))
                _delete(device, client, item)
        src.unlink()
    ref_src.unlink()
    (best_import, client_cpu, server_cpu), best_ref = min(imports), min(refs)
    row: dict[str, Any] = {
        "bench": "device_import",
        "size_mib": size_mib,
        "aead": aead,
        "device_aead": aead,
        "import_s": round(best_import, 4),
        "reference_s": round(best_ref, 4),
        "import_mib_s": round(size_mib / best_import, 1),
        "reference_mib_s": round(size_mib / best_ref, 1),
        "ratio": round(best_ref / best_import, 3),
        "client_cpu_s": round(client_cpu, 3),
        "service_cpu_s": round(server_cpu, 3),
        "rounds": n,
    }
    return row


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
    aeads: list[AeadName] = []
    for name in filter(None, args.aeads.split(",")):
        if name not in get_args(AeadName):
            parser.error(f"unknown AEAD {name!r}: one of {', '.join(get_args(AeadName))}")
        aeads.append(name)
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
        run(sizes, aeads, args.rounds, args.work, args.min_seconds)
    else:
        with tempfile.TemporaryDirectory(prefix="coffer-bench-import-") as tmp:
            run(sizes, aeads, args.rounds, Path(tmp), args.min_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
