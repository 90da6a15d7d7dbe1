"""End-to-end purchase over the simulated network (center, pc, board namespaces; the board on usb0) against
plain copies of the same bytes along the same path, in the same run (issue 13).

Coffer side: the real `center serve` (HTTPS, sample keys, items of random bytes), the real `device_os serve`
on swtpm (unix socket) bound to usb0, and `terminal_cli purchase ITEM` run in `pc`; timed by the purchase
itself (`seconds` in its JSON: library check, order, stream, TPM commit, payment, receipt; not the CLI's
start-up). Each timed round is a first purchase, as a buyer makes it: the item is deleted from the board's
library after each round (`terminal_cli delete`, untimed; until 2026-11-30 the rounds used `--repurchase`,
whose commit also deletes the replaced 100 MiB blob before it answers: ~20 ms of unlink on this VM).
References (`bench/_plain.py`): an HTTPS source in `center` serving a file of the order's stream length, a
relay in `pc` moving it with the same httpx calls and the same read-ahead (`terminal_cli.readahead`), and two
receivers in `board`: `discard` (the network path alone: `plain_copy_s`, `ratio`) and `store` (written to the
device's data filesystem and fsynced before the answer, as the purchase must: `plain_store_s`,
`ratio_store`). Rounds rotate which side goes first. Per side the median CPU seconds of each party
(`cpu_s`: center or source, terminal_cli or relay process, device or receiver). Peak RSS: terminal_cli
(getrusage of the child) and the device service (VmHWM before/after).

    python -m bench.purchase_e2e [--sizes 1,100,1024] [--rounds N]     (MiB; needs root; ~70-95 s)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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
CENTER_PORT, DEVICE_PORT, SOURCE_PORT, SINK_PORT, STORE_PORT = 8443, 8470, 9443, 9470, 9471
PLAIN = [sys.executable, "-m", "bench._plain"]
SIDES = ("coffer", "discard", "store")
PIN = "135790"
PEAK = (
    "import json, resource, subprocess, sys, time\n"
    "t = time.perf_counter(); out = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "usage = resource.getrusage(resource.RUSAGE_CHILDREN); peak = usage.ru_maxrss * 1024\n"
    "print(json.dumps({'rc': out.returncode, 'wall': time.perf_counter() - t, 'stdout': out.stdout,"
    " 'stderr': out.stderr[-2000:], 'maxrss': peak, 'cpu': usage.ru_utime + usage.ru_stime}))\n"
)


def _cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) a running process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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

    def measured(self, argv: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
        """Run `argv` in `pc`: its exit code, output, peak RSS and CPU seconds (as `PEAK` reports them)."""
        result = self.net.run(self.net.pc, [sys.executable, "-c", PEAK, *argv], cwd=ROOT, env=env)
        outcome: dict[str, Any] = json.loads(result.stdout)
        if outcome["rc"] != 0:
            raise RuntimeError(f"{argv}: {outcome['stderr']}")
        return outcome

    def cli(self, *args: str) -> dict[str, Any]:
        outcome = self.measured([sys.executable, "-m", "terminal_cli", "--json", *args], self.env)
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
            center = bench.start(net.center, [sys.executable, "-m", "center", "serve",
                                              "--data", str(work / "center"), "--listen", listen,
                                              "--issuer", bench.center_url,
                                              "--tls-cert", str(bench.cert), "--tls-key", str(bench.key),
                                              "--ek-ca", str(template.ca_bundle)])  # fmt: skip
            device = net.start_device(work / "board", tpm.tcti, DEVICE_PORT, cwd=ROOT,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
            bench.processes.append(device)
            stored = work / "board-plain-store"  # the filesystem of the device's data directory
            stored.mkdir()
            sinks = {
                "discard": bench.start(net.board, [*PLAIN, "sink", f"{net.board_address}:{SINK_PORT}"]),
                "store": bench.start(
                    net.board, [*PLAIN, "store", f"{net.board_address}:{STORE_PORT}", str(stored)]
                ),
            }
            bench.wait(net.center_address, CENTER_PORT)
            bench.wait(net.board_address, DEVICE_PORT)
            bench.wait(net.board_address, SINK_PORT)
            bench.wait(net.board_address, STORE_PORT)
            device_id = bench.cli("device", "setup")["answer"]["device_id"]
            bench.cli("enroll")
            code = bench.center(
                "credit", "issue", "--device", device_id, "--prepaid", "1000000", "JPY"
            ).strip()
            bench.cli("redeem", code)
            for mib in sizes:
                results.append(
                    _size(bench, device.pid, center.pid, sinks, stored, mib, rounds if mib < 1024 else 1)
                )
        finally:
            bench.stop()
            tpm.stop()
    return results


def _size(
    bench: Bench,
    device_pid: int,
    center_pid: int,
    sinks: dict[str, subprocess.Popen[bytes]],
    stored: Path,
    mib: int,
    rounds: int,
) -> dict[str, Any]:
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
    bench.cli("delete", item_id)  # each timed round is a first purchase (see the module docstring)
    stream_file = work / f"stream-{mib}.bin"
    with stream_file.open("wb") as fh:  # the reference moves the same number of bytes
        for _ in range(length // (1 << 20)):
            fh.write(os.urandom(1 << 20))
        fh.write(os.urandom(length % (1 << 20)))
    serve = [str(stream_file), f"{net.center_address}:{SOURCE_PORT}", str(bench.cert), str(bench.key)]
    source = bench.start(net.center, [*PLAIN, "source", *serve])
    bench.wait(net.center_address, SOURCE_PORT)
    seconds: dict[str, list[float]] = {side: [] for side in SIDES}
    cpu: dict[str, list[tuple[float, float, float]]] = {side: [] for side in SIDES}  # center, pc, board
    cli_rss: list[int] = []
    device_before = _vm(device_pid, "VmRSS")
    try:
        for n in range(rounds):
            for side in SIDES[n % 3 :] + SIDES[: n % 3]:  # each side goes first in turn
                far, near = (center_pid, device_pid) if side == "coffer" else (source.pid, sinks[side].pid)
                before = _cpu(far), _cpu(near)
                if side == "coffer":
                    outcome = bench.cli("purchase", item_id)
                    seconds[side].append(outcome["answer"]["seconds"])
                    cli_rss.append(outcome["maxrss"])
                else:
                    port = SINK_PORT if side == "discard" else STORE_PORT
                    source_url = f"https://{net.center_address}:{SOURCE_PORT}/"
                    relay = [
                        *PLAIN,
                        "relay",
                        source_url,
                        str(bench.ca),
                        f"http://{net.board_address}:{port}/",
                    ]
                    outcome = bench.measured(relay)
                    seconds[side].append(float(outcome["stdout"].strip()))
                cpu[side].append((_cpu(far) - before[0], outcome["cpu"], _cpu(near) - before[1]))
                if side == "coffer":
                    bench.cli("delete", item_id)  # untimed, before the next side's round
                elif side == "store":
                    (stored / "upload.bin").unlink()  # likewise
    finally:
        source.terminate()
        source.wait()
        bench.processes.remove(source)
        stream_file.unlink()
    device_peak = _vm(device_pid, "VmHWM")
    best = {side: min(seconds[side]) for side in SIDES}
    return {
        "bench": "purchase_e2e",
        "mib": mib,
        "stream_bytes": length,
        "rounds": rounds,
        "purchase_s": round(best["coffer"], 3),
        "purchase_mib_s": round(length / best["coffer"] / 2**20, 1),
        # the reference that discards the bytes on the board (the network path alone)
        "plain_copy_s": round(best["discard"], 3),
        "plain_mib_s": round(length / best["discard"] / 2**20, 1),
        "ratio": round(best["discard"] / best["coffer"], 3),
        # the reference that stores them durably on the board's data filesystem, as the purchase does
        "plain_store_s": round(best["store"], 3),
        "plain_store_mib_s": round(length / best["store"] / 2**20, 1),
        "ratio_store": round(best["store"] / best["coffer"], 3),
        "seconds_all": {side: [round(t, 3) for t in seconds[side]] for side in SIDES},
        # median CPU seconds per round of each party: center/source, terminal_cli/relay, device/receiver
        "cpu_s": {
            side: [round(statistics.median(c[i] for c in cpu[side]), 3) for i in range(3)] for side in SIDES
        },
        "terminal_cli_peak_rss_mb": round(max(cli_rss) / 1e6, 1),
        "device_rss_before_mb": round(device_before / 1e6, 1),
        "device_peak_rss_mb": round(device_peak / 1e6, 1),
        "load_average": os.getloadavg()[0],
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
