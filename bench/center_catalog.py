"""Catalog throughput on loopback: `GET /v1/items` and a preview download, against a reference.

The reference is a minimal ASGI app on the same uvicorn (one worker, no access log) answering bytes of
the same sizes, measured in the same run with the same client, so the ratio says what the center's own
work costs. The targets take turns (`--slices`, 6 by default) so that a busy moment of a shared host falls on
both sides of a ratio.
Prints JSON lines: one per measurement, then a summary. `python -m bench.center_catalog [--duration S]`.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REFERENCE_APP = """
import sys, uvicorn
json_body = open(sys.argv[2], 'rb').read()
blob = open(sys.argv[3], 'rb').read()
async def app(scope, receive, send):
    if scope['type'] != 'http':
        return
    body, ctype = (json_body, b'application/json') if scope['path'] == '/items' else (blob, b'image/webp')
    await send({'type': 'http.response.start', 'status': 200,
                'headers': [(b'content-type', ctype), (b'content-length', str(len(body)).encode())]})
    await send({'type': 'http.response.body', 'body': body})
uvicorn.run(app, host='127.0.0.1', port=int(sys.argv[1]), log_level='warning', access_log=False)
"""

CENTER_APP = """
import sys, uvicorn
from pathlib import Path
from center.api.app import create_app
from center.settings import CenterSettings
settings = CenterSettings(data_dir=Path(sys.argv[2]), listen='127.0.0.1:' + sys.argv[1])
port = int(sys.argv[1])
uvicorn.run(create_app(settings), host='127.0.0.1', port=port, log_level='warning', access_log=False)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(code: str, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(port), *args], cwd=Path(__file__).resolve().parents[1]
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/", timeout=1)
            return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server on {url} did not start")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of process `pid` so far (Linux /proc; 0 where unavailable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(name: str, url: str, duration: float, concurrency: int, pid: int = 0) -> dict[str, object]:
    """Closed-loop load: `concurrency` keep-alive clients in threads for `duration` seconds; `pid`: the
    server's process, whose CPU time is reported too."""
    counts = [0] * concurrency
    errors = [0] * concurrency
    size = [0]
    stop = time.monotonic() + duration

    def worker(i: int) -> None:
        with httpx.Client(timeout=10) as client:
            while time.monotonic() < stop:
                r = client.get(url)
                if r.status_code == 200:
                    counts[i] += 1
                    size[0] = len(r.content)
                else:
                    errors[i] += 1

    started = time.monotonic()
    cpu = _cpu_seconds(pid) if pid else 0.0
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    total = sum(counts)
    server_cpu = _cpu_seconds(pid) - cpu if pid else 0.0
    return {
        "server_cpu_seconds": server_cpu,
        "name": name,
        "requests": total,
        "errors": sum(errors),
        "seconds": round(elapsed, 2),
        "rps": round(total / elapsed, 1),
        "bytes": size[0],
        "concurrency": concurrency,
    }


def interleaved(
    targets: list[tuple[str, str, int]], duration: float, concurrency: int, slices: int
) -> list[dict[str, object]]:
    """Each target for `duration` seconds in all, in `slices` turns taken in rotation, so a busy moment of the
    shared host falls on the center and on the reference alike (one after the other, a noisy second on
    either side swung the ratio from 0.41 to 0.92)."""
    totals: dict[str, dict[str, object]] = {}
    for _ in range(slices):
        for name, url, pid in targets:
            row = measure(name, url, duration / slices, concurrency, pid)
            total = totals.setdefault(
                name, {**row, "requests": 0, "errors": 0, "seconds": 0.0, "server_cpu_seconds": 0.0}
            )
            for key in ("requests", "errors", "seconds", "server_cpu_seconds"):
                total[key] = total[key] + row[key]  # type: ignore[operator]
    for total in totals.values():
        total["seconds"] = round(float(total["seconds"]), 2)  # type: ignore[arg-type]
        total["rps"] = round(int(total["requests"]) / float(total["seconds"]), 1)  # type: ignore[call-overload]
        total["slices"] = slices
        cpu = float(total.pop("server_cpu_seconds"))  # type: ignore[arg-type]
        # the server's own CPU per request (clock ticks of 10 ms: read it over a few thousand requests)
        total["server_cpu_ms_per_request"] = round(cpu * 1000 / max(1, int(total["requests"])), 3)  # type: ignore[call-overload]
    return list(totals.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.center_catalog", description=__doc__)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--items", type=int, default=12, help="catalog size")
    parser.add_argument("--slices", type=int, default=6, help="turns per target, taken in rotation")
    args = parser.parse_args(argv)

    from center import samples
    from center.blobs import LocalBlobStore
    from center.db.engine import make_engine, session_factory, upgrade
    from center.keys import load_or_create
    from center.services.catalog import CatalogService, NewItem, parse_price

    with tempfile.TemporaryDirectory(prefix="coffer-bench-") as tmp:
        data = Path(tmp) / "center"
        data.mkdir(mode=0o700)
        load_or_create(data / "keys", "http://127.0.0.1")
        engine = make_engine(f"sqlite:///{data / 'center.db'}")
        upgrade(engine)
        catalog = CatalogService(session_factory(engine), LocalBlobStore(data / "blobs"), data / "tmp")
        image = samples.make_image(Path(tmp) / "image.png")
        text = samples.make_text(Path(tmp) / "story.md")
        for i in range(args.items):
            catalog.add_item(NewItem([image if i % 2 else text], f"Item {i}", parse_price(100 + i, "JPY")))
        engine.dispose()

        center, center_url = _start(CENTER_APP, str(data))
        try:
            listing = httpx.get(center_url + "/v1/items").content
            first_image = next(i for i in json.loads(listing)["items"] if i["media_kind"] == "image")
            preview_url = center_url + first_image["previews"][0]["url"]
            preview = httpx.get(preview_url).content
            (Path(tmp) / "items.json").write_bytes(listing)
            (Path(tmp) / "preview.bin").write_bytes(preview)
            reference, reference_url = _start(
                REFERENCE_APP, str(Path(tmp) / "items.json"), str(Path(tmp) / "preview.bin")
            )
            try:
                targets = [
                    ("reference-json", reference_url + "/items", reference.pid),
                    ("center-items", center_url + "/v1/items", center.pid),
                    ("reference-blob", reference_url + "/blob", reference.pid),
                    ("center-preview", preview_url, center.pid),
                ]
                rows = interleaved(targets, args.duration, args.concurrency, args.slices)
            finally:
                _stop(reference)
        finally:
            _stop(center)
    for row in rows:
        print(json.dumps(row))
    by = {str(r["name"]): float(r["rps"]) for r in rows}  # type: ignore[arg-type]
    cpu = {str(r["name"]): float(r["server_cpu_ms_per_request"]) for r in rows}  # type: ignore[arg-type]
    print(
        json.dumps(
            {
                "name": "summary",
                "cpus": os.cpu_count(),
                "items": args.items,
                "items_vs_reference": round(by["center-items"] / by["reference-json"], 3),
                "preview_vs_reference": round(by["center-preview"] / by["reference-blob"], 3),
                # by the servers' own CPU per request (what one core could serve), less noisy on a shared host
                "items_cpu_vs_reference": round(cpu["reference-json"] / cpu["center-items"], 3)
                if cpu["center-items"]
                else 0.0,
            }
        )
    )
    return 0 if all(r["errors"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
