"""The center's commerce on loopback: orders/s and payments/s with p50/p99 at 1, 16 and 64 concurrent clients,
and delivery MiB/s of an order's content stream against the same server streaming the same blob unencrypted.

Two ways to split the 2 cores, each run in turn (`--workers 1,2`, the default; each row says `workers` and
`split`): with 1 worker the server (one uvicorn process: create_app, access log off) is pinned to CPU 0 and
the load comes from this process pinned to CPU 1; with N > 1 workers (uvicorn's supervisor and N worker
processes sharing the socket, as `center serve --workers N`) the server may use both cores and the load
generator runs unpinned beside it (it needs < 0.1 of one core). The load is asyncio, one keep-alive
connection per client with a minimal HTTP/1.1 client over real sockets; httpx only for the untimed set-up.
Each row gives the server's CPU per request (all its processes) and its CPU share (in cores), and the load
generator's share of a core (`load_cpu_share`: near 1.0 would mean the load generator, not the server, sets
the rate). Each closed loop runs `WARMUP` (0.5 s) untimed on its connections before the measured duration
(`warmup_requests`, `warmup_max`: the first requests find each worker's caches cold and arrive together).
Delivery is measured in the 1-worker run only.
Devices are bound with software keys (the center never talks to a TPM after enrollment), funded through the
real credit code path; payments are sealed before the timed run, so the timed
part is the center's own work. Each client uses its own device (orders of one device serialize on its row).
The reference for delivery is a bench-only route added to the same app that streams the plaintext blob with
the same chunking (`/bench/plain`), measured in the same run.

SQLite runs with the center's default `synchronous=FULL` (every commit fsynced: durable on power loss) unless
`--sqlite-synchronous normal` (docs/center-commerce.md, Durability); each row says which.

`python -m bench.center_orders [--duration S] [--database-url URL] [--delivery-mib N] [--sqlite-synchronous
full|normal] [--skip-delivery] [--workers 1,2]` prints JSON lines.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench._support import latency_ms

SERVER = """
import json, os, sys, uvicorn
from pathlib import Path
from fastapi.responses import StreamingResponse
from center.api.app import create_app
from center.settings import CenterSettings

def app():
    port, data, url, sha, synchronous, workers = json.loads(os.environ['COFFER_BENCH_SERVER_ARGS'])
    kw = {'database_url': url} if url else {}
    settings = CenterSettings(
        data_dir=Path(data), listen='127.0.0.1:' + port, sqlite_synchronous=synchronous, workers=int(workers),
        **kw
    )
    application = create_app(settings)
    blobs = application.state.center.blobs
    @application.get('/bench/plain')
    def plain():
        return StreamingResponse(blobs.iter_chunks(sha), media_type='application/octet-stream')
    return application

if __name__ == '__main__':
    workers = int(sys.argv[6])
    os.sched_setaffinity(0, {0} if workers == 1 else set(range(os.cpu_count() or 1)))
    os.environ['COFFER_BENCH_SERVER_ARGS'] = json.dumps(sys.argv[1:7])
    common = dict(
        host='127.0.0.1', port=int(sys.argv[1]), log_level='warning', access_log=False, loop='uvloop',
        http='httptools',
    )
    if workers == 1:
        uvicorn.run(app(), **common)
    else:  # as `center serve --workers N`: uvicorn's supervisor, N spawned workers on one socket
        uvicorn.run('coffer_bench_server:app', factory=True, workers=workers, **common)
"""
CONCURRENCY = (1, 16, 64)


def _cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) of process `pid` so far (Linux /proc; 0 where unavailable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError, TypeError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


SERVER_PID: list[int | None] = [None]


def _server_cpu() -> float:
    """CPU seconds of the server so far: its process and every child (uvicorn's workers), from /proc."""
    root = SERVER_PID[0]
    if root is None:
        return 0.0
    total = _cpu_seconds(root)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == root:
                total += _cpu_seconds(int(entry))
    return total


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _prepare(data: Path, database_url: str | None, devices: int, delivery_mib: int) -> dict[str, Any]:
    """Catalog items, bound and funded devices; returns what the load needs (tokens, keys, item ids)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from center.blobs import LocalBlobStore
    from center.db import tx
    from center.db.commerce import Device
    from center.db.engine import make_engine, session_factory, upgrade
    from center.keys import load_or_create
    from center.services.catalog import CatalogService, NewItem, parse_price
    from center.services.common import Commerce, canonical
    from center.services.credits import CreditService, NewCredit
    from center.settings import CenterSettings
    from protocol.b64 import b64url_encode
    from protocol.center_api import RedeemRequest
    from protocol.keys import device_id_for
    from protocol.messages import Jwk

    settings = CenterSettings(data_dir=data, **({"database_url": database_url} if database_url else {}))
    settings.prepare_data_dir()
    keys = load_or_create(settings.keys_dir, settings.issuer_url())
    engine = make_engine(settings.sqlalchemy_url())
    upgrade(engine)
    sessions = session_factory(engine)
    blobs = LocalBlobStore(settings.blobs_dir)
    catalog = CatalogService(sessions, blobs, data / "tmp")
    small = data / "small.txt"
    small.write_text("a small text item\n" * 200)
    big = data / "big.txt"
    with open(big, "w") as fh:
        line = "abcdefghijklmnopqrstuvwxyz0123456789 " * 3 + "\n"
        for _ in range(delivery_mib * 1024 * 1024 // len(line)):
            fh.write(line)
    item = catalog.add_item(NewItem([small], "Small", parse_price(1, "JPY"))).item_id
    large = catalog.add_item(NewItem([big], "Large", parse_price(1, "JPY")))
    commerce = Commerce(sessions, keys, settings, blobs)
    credits = CreditService(commerce)
    out = []
    for _ in range(devices):
        ak, kem, payer = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
        device_id = device_id_for(ak.public_key())
        token = secrets.token_urlsafe(32)
        with tx.write(sessions) as session:
            session.add(
                Device(
                    device_id=device_id,
                    ek_hash=hashlib.sha256(device_id.encode()).hexdigest(),
                    ak_public=b64url_encode(device_id.encode()),
                    kem_jwk=canonical(Jwk.from_public_key(kem.public_key()).model_dump()),
                    payment_jwk=canonical(Jwk.from_public_key(payer.public_key()).model_dump()),
                    aead="aes-256-gcm",
                    token_hash=b64url_encode(hashlib.sha256(token.encode()).digest()),
                    state="active",
                    enrolled_at=0,
                    updated_at=0,
                )
            )
        code, _ = credits.issue(NewCredit(device_id, "prepaid", 10**12, "JPY"))
        credits.redeem(RedeemRequest(code=code, device_id=device_id), device_id)
        out.append({"device_id": device_id, "token": token, "payer": payer})
    engine.dispose()
    return {
        "item": item,
        "large": large.item_id,
        "large_sha": large.content_sha256,
        "large_length": large.content_length,
        "devices": out,
        "payment_key": keys.payment.public_key(),
        "signing_key": keys.signing.public_key(),
    }


def _payment(setup: dict[str, Any], device: dict[str, Any], order_jws: str, counter: int) -> str:
    from protocol import hpke, jws, pricing
    from protocol.b64 import b64url_encode
    from protocol.messages import Order, Payment, message_hash
    from protocol.pricing import Purses

    order = jws.verify(order_jws, Order, keys=setup["signing_key"], now=0)
    debits = pricing.debits(order.price, Purses(prepaid={"JPY": order.price.amount}), order.item_id)
    token = jws.sign(
        Payment(
            iss=device["device_id"],
            iat=order.iat,
            order_id=order.order_id,
            order_hash=message_hash(order_jws),
            device_id=device["device_id"],
            counter=counter,
            debits=debits,
        ),
        jws.SoftwareSigner(device["payer"]),
    )
    sealed = hpke.seal(setup["payment_key"], token.encode(), info=hpke.payment_info(order.order_id))
    return b64url_encode(sealed)


class _Connection:
    """One keep-alive HTTP/1.1 connection with a minimal client (request line, headers, Content-Length body):
    the load generator's own cost per request stays small and flat with the number of clients (httpx's pool
    made a bare app that spends 1.5 ms per request fall from 166 to 77 requests/s between 16 and 64 clients
    on this host, p99 3 s: the load generator, not the server, was measured)."""

    def __init__(self, url: str) -> None:
        parts = httpx.URL(url)
        self.host, self.port = parts.host, parts.port or 80
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, kw: dict[str, Any]) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        body = json.dumps(kw["json"]).encode() if "json" in kw else b""
        lines = [
            f"{method} {path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            f"Content-Length: {len(body)}",
        ]
        if body:
            lines.append("Content-Type: application/json")
        lines += [f"{k}: {v}" for k, v in kw.get("headers", {}).items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


#: seconds each closed loop runs untimed before its measured `duration` (see `_closed_loop`)
WARMUP = 0.5


async def _closed_loop(
    url: str, concurrency: int, duration: float, make: Any, ok: int
) -> tuple[int, int, list[float], float]:
    """`concurrency` clients, each on its own keep-alive connection, sending make(i, n) requests back to back
    for `WARMUP` + `duration` seconds; only requests started after the warm-up are counted and timed (and the
    server's CPU from then on). The warm-up's latencies go to `LAST_WARMUP`: the first request of a
    connection finds a worker's per-process caches cold (its device token not yet known there: the FastAPI
    route instead of the lean path), and the 64 clients' first requests arrive together."""
    samples: list[float] = []
    warm: list[float] = []
    done = [0]
    errors = [0]
    connections = [_Connection(url) for _ in range(concurrency)]
    warm_end = time.monotonic() + WARMUP
    stop = warm_end + duration
    marks: dict[str, float] = {}

    async def worker(i: int) -> None:
        n = 0
        while time.monotonic() < stop:
            method, path, kw = make(i, n)
            n += 1
            if kw is None:
                return
            timed = time.monotonic() >= warm_end
            t0 = time.perf_counter()
            status = await connections[i].request(method, path, kw)
            (samples if timed else warm).append(time.perf_counter() - t0)
            if status != ok:
                errors[0] += 1  # (in the warm-up too)
            elif timed:
                done[0] += 1

    async def start_clock() -> None:
        await asyncio.sleep(max(0.0, warm_end - time.monotonic()))
        marks["started"] = time.monotonic()
        marks["cpu"] = _server_cpu()
        marks["load_cpu"] = time.process_time()

    clock = asyncio.ensure_future(start_clock())
    try:
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        await clock
    finally:
        elapsed = time.monotonic() - marks.get("started", warm_end)
        LAST_CPU[0] = _server_cpu() - marks.get("cpu", 0.0)
        LAST_LOAD_CPU[0] = time.process_time() - marks.get("load_cpu", 0.0)
        LAST_WARMUP[:] = warm
        for connection in connections:
            await connection.close()
    return done[0], errors[0], samples, elapsed


LAST_CPU = [0.0]  # the server's CPU seconds during the last closed loop
LAST_LOAD_CPU = [0.0]  # this process's (the load generator's) CPU seconds during it
LAST_WARMUP: list[float] = []  # the latencies of its untimed warm-up (seconds)


def _warmup_fields() -> dict[str, float]:
    """The warm-up's request count and its slowest request (not in the percentiles; see `_closed_loop`)."""
    return {"warmup_requests": len(LAST_WARMUP), "warmup_max": round(max(LAST_WARMUP, default=0) * 1000, 3)}


def _cpu_fields(requests: int, elapsed: float) -> dict[str, float]:
    """The server's CPU per request (less noisy than rates on a shared host) and its share of one core, and
    the load generator's share of its own core (near 1.0 would mean the load, not the server, is measured)."""
    return {
        "server_cpu_ms_per_request": round(LAST_CPU[0] / max(1, requests) * 1000, 3),
        "server_cpu_share": round(LAST_CPU[0] / elapsed, 2),
        "load_cpu_share": round(LAST_LOAD_CPU[0] / elapsed, 2),
    }


def _order_call(setup: dict[str, Any], item: str, run: str) -> Any:
    def make(i: int, n: int) -> tuple[str, str, dict[str, Any]]:
        device = setup["devices"][i]
        body = {"item_id": item, "device_id": device["device_id"]}
        headers = {"Authorization": f"Bearer {device['token']}", "Idempotency-Key": f"order-{run}-{i}-{n}"}
        return "POST", "/v1/orders", {"json": body, "headers": headers}

    return make


async def _bench_orders(url: str, setup: dict[str, Any], duration: float, db: str) -> list[dict[str, Any]]:
    rows = []
    for concurrency in CONCURRENCY:
        done, errors, samples, elapsed = await _closed_loop(
            url, concurrency, duration, _order_call(setup, setup["item"], f"o{concurrency}"), 201
        )
        rows.append(
            {
                "name": "orders",
                "db": db,
                "concurrency": concurrency,
                "ok": done,
                "errors": errors,
                "per_second": round(done / elapsed, 1),
                **latency_ms(samples),
                **_cpu_fields(done + errors, elapsed),
                **_warmup_fields(),
            }
        )
    return rows


#: the most payments/s each concurrency is sealed for (above, its clients would run out before the end)
PAYMENTS_PER_SECOND = {1: 1500, 16: 2000, 64: 3000}


async def _bench_payments(url: str, setup: dict[str, Any], duration: float, db: str) -> list[dict[str, Any]]:
    rows = []
    for concurrency in CONCURRENCY:
        # orders first (untimed), then their payments sealed in this process, then the timed payments
        # enough for the whole loop at up to PAYMENTS_PER_SECOND[concurrency] (a client that runs out stops)
        per_client = max(
            20, int((duration + WARMUP) * PAYMENTS_PER_SECOND.get(concurrency, 3000) / concurrency)
        )
        queues: list[list[tuple[str, str]]] = [[] for _ in range(concurrency)]
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            for i in range(concurrency):
                device = setup["devices"][i]
                for n in range(per_client):
                    r = await client.post(
                        "/v1/orders",
                        json={"item_id": setup["item"], "device_id": device["device_id"]},
                        headers={
                            "Authorization": f"Bearer {device['token']}",
                            "Idempotency-Key": f"pay-{concurrency}-{i}-{n}",
                        },
                    )
                    answer = r.json()
                    if r.status_code != 201:
                        raise RuntimeError(f"order refused: {r.text}")
                    counter = concurrency * 10**6 + i * 10**4 + n
                    queues[i].append((answer["order_id"], _payment(setup, device, answer["order"], counter)))

        def make(
            i: int, n: int, queues: list[list[tuple[str, str]]] = queues
        ) -> tuple[str, str, dict[str, Any] | None]:
            if n >= len(queues[i]):
                return "POST", "", None
            order_id, sealed = queues[i][n]
            headers = {"Authorization": f"Bearer {setup['devices'][i]['token']}"}
            return "POST", f"/v1/orders/{order_id}/payment", {"json": {"payment": sealed}, "headers": headers}

        done, errors, samples, elapsed = await _closed_loop(url, concurrency, duration, make, 200)
        rows.append(
            {
                "name": "payments",
                "db": db,
                "concurrency": concurrency,
                "ok": done,
                "errors": errors,
                "per_second": round(done / elapsed, 1),
                **latency_ms(samples),
                **_cpu_fields(done + errors, elapsed),
                **_warmup_fields(),
            }
        )
    return rows


async def _bench_delivery(url: str, setup: dict[str, Any], rounds: int) -> dict[str, Any]:
    device = setup["devices"][0]
    auth = {"Authorization": f"Bearer {device['token']}"}
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        r = await client.post(
            "/v1/orders",
            json={"item_id": setup["large"], "device_id": device["device_id"]},
            headers={**auth, "Idempotency-Key": "delivery-0001"},
        )
        content = r.json()["content_url"]
        best = {"stream": 0.0, "plain": 0.0}
        cpu = {"stream": 0.0, "plain": 0.0}  # the server's CPU seconds over all rounds (clock ticks: 10 ms)
        sizes = {}
        for _ in range(rounds):
            for name, path, headers in (("stream", content, auth), ("plain", "/bench/plain", {})):
                t0 = time.perf_counter()
                c0 = _server_cpu()
                size = 0
                async with client.stream("GET", path, headers=headers) as response:
                    async for chunk in response.aiter_raw():
                        size += len(chunk)
                elapsed = time.perf_counter() - t0
                sizes[name] = size
                best[name] = max(best[name], size / elapsed / 2**20)
                cpu[name] += _server_cpu() - c0
    return {
        "name": "delivery",
        "bytes_stream": sizes["stream"],
        "bytes_plain": sizes["plain"],
        "stream_mib_s": round(best["stream"], 1),
        "plain_mib_s": round(best["plain"], 1),
        "ratio": round(best["stream"] / best["plain"], 3),
        # the same comparison by the server's own CPU (less noisy on a shared host; 0 without /proc)
        "server_cpu_ms_per_mib_stream": round(cpu["stream"] * 1000 / (rounds * sizes["stream"] / 2**20), 3),
        "server_cpu_ms_per_mib_plain": round(cpu["plain"] * 1000 / (rounds * sizes["plain"] / 2**20), 3),
        "cpu_ratio": round(cpu["plain"] / cpu["stream"], 3) if cpu["stream"] > 0 else 0.0,
    }


def run_one(
    database_url: str | None,
    duration: float,
    delivery_mib: int,
    synchronous: str = "full",
    delivery: bool = True,
    workers: int = 1,
) -> list[dict[str, Any]]:
    db = "postgresql" if database_url else f"sqlite-{synchronous}"
    cores = set(range(os.cpu_count() or 1))
    if hasattr(os, "sched_setaffinity") and len(cores) > 1:  # the load: CPU 1, or beside the workers
        os.sched_setaffinity(0, {1} if workers == 1 else cores)
    split = (
        "server on CPU 0, load on CPU 1" if workers == 1 else f"{workers} workers and the load share CPUs 0-1"
    )
    with tempfile.TemporaryDirectory(prefix="coffer-bench-orders-") as tmp:
        data = Path(tmp) / "center"
        setup = _prepare(data, database_url, max(CONCURRENCY), delivery_mib)
        port = _free_port()
        script = Path(tmp) / "coffer_bench_server.py"  # importable by name in uvicorn's spawned workers
        script.write_text(SERVER)
        repo = Path(__file__).resolve().parents[1]
        server = subprocess.Popen(
            [
                sys.executable,
                str(script),
                str(port),
                str(data),
                database_url or "",
                setup["large_sha"],
                synchronous,
                str(workers),
            ],
            cwd=repo,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")])),
            },
        )
        url = f"http://127.0.0.1:{port}"
        SERVER_PID[0] = server.pid
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(url + "/v1/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the center did not start")
                time.sleep(0.1)
            if workers > 1:
                time.sleep(3)  # one worker answers first; let the others finish starting
            rows = asyncio.run(_bench_orders(url, setup, duration, db))
            rows += asyncio.run(_bench_payments(url, setup, duration, db))
            if delivery and workers == 1:
                rows.append({**asyncio.run(_bench_delivery(url, setup, 5)), "db": db})
            for row in rows:
                row.update(workers=workers, split=split)
        finally:
            server.terminate()
            server.wait(timeout=20)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.center_orders", description=__doc__)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument("--database-url", default=os.environ.get("COFFER_BENCH_DATABASE_URL"))
    parser.add_argument("--delivery-mib", type=int, default=64)
    parser.add_argument("--sqlite-synchronous", choices=("full", "normal"), default="full")
    parser.add_argument("--skip-delivery", action="store_true", help="orders and payments only")
    parser.add_argument("--skip-sqlite", action="store_true", help="only the --database-url run")
    parser.add_argument(
        "--workers",
        default="1,2",
        help="server worker processes, one run each (comma-separated; 1: server on CPU 0, load on CPU 1)",
    )
    args = parser.parse_args(argv)
    try:
        counts = [int(n) for n in args.workers.split(",")]
    except ValueError:
        parser.error("--workers takes numbers separated by commas, e.g. 1,2")
    if not counts or any(not 1 <= n <= 16 for n in counts):
        parser.error("--workers: each between 1 and 16")
    delivery = not args.skip_delivery
    rows = []
    for workers in counts:
        if not args.skip_sqlite:
            rows += run_one(
                None, args.duration, args.delivery_mib, args.sqlite_synchronous, delivery, workers
            )
        if args.database_url:
            rows += run_one(
                args.database_url, args.duration, args.delivery_mib, delivery=delivery, workers=workers
            )
    for row in rows:
        print(json.dumps(row))
    print(
        json.dumps(
            {
                "name": "summary",
                "cpus": os.cpu_count(),
                "workers": counts,
                "loadavg": [round(x, 2) for x in os.getloadavg()],
            }
        )
    )
    return 0 if all(r.get("errors", 0) == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
