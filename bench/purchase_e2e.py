"""End-to-end purchase over the simulated network (center, pc, board namespaces; the board on usb0) against
plain copies of the same bytes along the same path, in the same run (issue 13).

Coffer side: the real `center serve` (HTTPS, sample keys, items of random bytes), the real `device_os serve`
on swtpm (unix socket) bound to usb0, and `terminal_cli purchase ITEM --repurchase` run in `pc`; timed by the
purchase itself (`seconds` in its JSON: order, stream, TPM commit, payment, receipt; not the CLI's start-up)
and as the whole process. Reference: `bench/_plain.py` — an HTTPS source in `center` serving a file of the
order's stream length, a drain in `board`, and a relay in `pc` moving it with the same httpx calls and the
same read-ahead (`terminal_cli.readahead`). Rounds alternate sides. Peak RSS: terminal_cli (getrusage of
the child) and the device service (VmHWM before/after).

    python -m bench.purchase_e2e [--sizes 1,100,1024] [--rounds N]     (MiB; needs root; ~70-95 s)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from scripts.swtpm import Swtpm, copy_state, provision_template
from scripts.tls import server_certificate
from scripts.usblink import Network

ROOT = Path(__file__).resolve().parent.parent
CENTER_PORT, DEVICE_PORT, SOURCE_PORT, SINK_PORT = 8443, 8470, 9443, 9470
PIN = "135790"
PEAK = (
    "import json, resource, subprocess, sys, time\n"
    "t = time.perf_counter(); out = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
    "print(json.dumps({'rc': out.returncode, 'wall': time.perf_counter() - t, 'stdout': out.stdout,"
    " 'stderr': out.stderr[-2000:], 'maxrss': peak}))\n"
)


def _vm(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for {pid}")


class Bench:
    def __init__(self, net: Network, work: Path) -> None:
        self.net, self.work = net, work
        self.processes: list[subprocess.Popen[bytes]] = []
        self.center_url = f"https://{net.center_address}:{CENTER_PORT}"
        self.ca, self.cert, self.key = server_certificate(work, net.center_address)
        self.env = {
            **os.environ,
            "XDG_CONFIG_HOME": str(work / "pc/config"),
            "XDG_STATE_HOME": str(work / "pc/state"),
            "XDG_RUNTIME_DIR": str(work / "pc/runtime"),
            "COFFER_CENTER": self.center_url,
            "COFFER_CENTER_CA": str(self.ca),
            "COFFER_DEVICE": f"http://{net.board_address}:{DEVICE_PORT}",
            "COFFER_PIN": PIN,
        }
        for d in ("config", "state", "runtime"):
            (work / "pc" / d).mkdir(mode=0o700, parents=True, exist_ok=True)
        self.admin_env = {**os.environ, "COFFER_CENTER_ISSUER": self.center_url,
                          "COFFER_CENTER_LISTEN": f"{net.center_address}:{CENTER_PORT}"}  # fmt: skip

    def start(self, namespace: str, argv: list[str]) -> subprocess.Popen[bytes]:
        process = self.net.popen(
            namespace, argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.processes.append(process)
        return process

    def wait(self, host: str, port: int) -> None:
        probe = f"import socket; socket.create_connection(({host!r}, {port}), timeout=1).close()"
        for _ in range(600):
            if self.net.run(self.net.pc, [sys.executable, "-c", probe]).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{host}:{port} never answered")

    def cli(self, *args: str) -> dict[str, Any]:
        argv = [sys.executable, "-c", PEAK, sys.executable, "-m", "terminal_cli", "--json", *args]
        result = self.net.run(self.net.pc, argv, cwd=ROOT, env=self.env)
        outcome: dict[str, Any] = json.loads(result.stdout)
        if outcome["rc"] != 0:
            raise RuntimeError(f"terminal_cli {args}: {outcome['stderr']}")
        outcome["answer"] = json.loads(outcome["stdout"])
        return outcome

    def center(self, *args: str) -> str:
        data = str(self.work / "center")
        result = subprocess.run([sys.executable, "-m", "center", *args, "--data", data], cwd=ROOT,
                                env=self.admin_env, capture_output=True, text=True, check=True)  # fmt: skip
        return result.stdout

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def run(sizes: list[int], rounds: int) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    scratch = os.environ.get("COFFER_BENCH_DIR")
    with tempfile.TemporaryDirectory(prefix="coffer-bench-e2e-", dir=scratch) as tmp, Network.create() as net:
        work = Path(tmp)
        template = provision_template(work / "tpm-template")
        tpm = Swtpm(copy_state(template, work / "tpm"), transport="unix").start()
        bench = Bench(net, work)
        try:
            from center.demo import build_demo_catalog

            build_demo_catalog(work / "center", f"{net.center_address}:{CENTER_PORT}")
            listen = f"{net.center_address}:{CENTER_PORT}"
            bench.start(net.center, [sys.executable, "-m", "center", "serve", "--data", str(work / "center"),
                                     "--listen", listen, "--issuer", bench.center_url,
                                     "--tls-cert", str(bench.cert), "--tls-key", str(bench.key),
                                     "--ek-ca", str(template.ca_bundle)])  # fmt: skip
            device = net.start_device(work / "board", tpm.tcti, DEVICE_PORT, cwd=ROOT,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
            bench.processes.append(device)
            bench.start(
                net.board, [sys.executable, "-m", "bench._plain", "sink", f"{net.board_address}:{SINK_PORT}"]
            )
            bench.wait(net.center_address, CENTER_PORT)
            bench.wait(net.board_address, DEVICE_PORT)
            bench.wait(net.board_address, SINK_PORT)
            device_id = bench.cli("device", "setup")["answer"]["device_id"]
            bench.cli("enroll")
            code = bench.center(
                "credit", "issue", "--device", device_id, "--prepaid", "1000000", "JPY"
            ).strip()
            bench.cli("redeem", code)
            for mib in sizes:
                results.append(_size(bench, device.pid, mib, rounds if mib < 1024 else 1))
        finally:
            bench.stop()
            tpm.stop()
    return results


def _size(bench: Bench, device_pid: int, mib: int, rounds: int) -> dict[str, Any]:
    work, net = bench.work, bench.net
    blob = work / f"item-{mib}.bin"
    with blob.open("wb") as fh:
        for n in range(mib):
            fh.write(os.urandom((1 << 20) - 8) + n.to_bytes(8, "big"))
    trial = work / "trial.bin"
    trial.write_bytes(b"trial")
    added = json.loads(bench.center("item", "add", str(blob), "--title", f"{mib} MiB", "--price", "1",
                                    "--currency", "JPY", "--preview", str(trial), "--json"))  # fmt: skip
    blob.unlink()
    item_id = added["item_id"]
    first = bench.cli("purchase", item_id)  # also learns the stream length
    length = first["answer"]["streamed_bytes"]
    stream_file = work / f"stream-{mib}.bin"
    with stream_file.open("wb") as fh:  # the reference moves the same number of bytes
        for _ in range(length // (1 << 20)):
            fh.write(os.urandom(1 << 20))
        fh.write(os.urandom(length % (1 << 20)))
    serve = [str(stream_file), f"{net.center_address}:{SOURCE_PORT}", str(bench.cert), str(bench.key)]
    source = bench.start(net.center, [sys.executable, "-m", "bench._plain", "source", *serve])
    bench.wait(net.center_address, SOURCE_PORT)
    coffer, plain, cli_rss = [], [], []
    device_before = _vm(device_pid, "VmRSS")
    try:
        for n in range(rounds):
            for side in ("coffer", "plain") if n % 2 == 0 else ("plain", "coffer"):
                if side == "coffer":
                    outcome = bench.cli("purchase", item_id, "--repurchase")
                    coffer.append(outcome["answer"]["seconds"])
                    cli_rss.append(outcome["maxrss"])
                else:
                    relay = [sys.executable, "-m", "bench._plain", "relay",
                             f"https://{net.center_address}:{SOURCE_PORT}/", str(bench.ca),
                             f"http://{net.board_address}:{SINK_PORT}/"]  # fmt: skip
                    result = net.run(net.pc, relay, cwd=ROOT)
                    plain.append(float(result.stdout.strip()))
    finally:
        source.terminate()
        source.wait()
        bench.processes.remove(source)
        stream_file.unlink()
    device_peak = _vm(device_pid, "VmHWM")
    best_coffer, best_plain = min(coffer), min(plain)
    return {
        "bench": "purchase_e2e",
        "mib": mib,
        "stream_bytes": length,
        "rounds": rounds,
        "purchase_s": round(best_coffer, 3),
        "purchase_mib_s": round(length / best_coffer / 2**20, 1),
        "plain_copy_s": round(best_plain, 3),
        "plain_mib_s": round(length / best_plain / 2**20, 1),
        "ratio": round(best_plain / best_coffer, 3),
        "terminal_cli_peak_rss_mb": round(max(cli_rss) / 1e6, 1),
        "device_rss_before_mb": round(device_before / 1e6, 1),
        "device_peak_rss_mb": round(device_peak / 1e6, 1),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.purchase_e2e")
    parser.add_argument("--sizes", default="1,100,1024")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print(json.dumps({"bench": "purchase_e2e", "skipped": "needs root (network namespaces)"}))
        return 0
    for line in run([int(s) for s in args.sizes.split(",")], args.rounds):
        print(json.dumps(line))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
