"""`center serve --workers 2` on SQLite: real worker processes on one real socket (127.0.0.1), real SQLite.

Which worker answered a connection is read from the kernel (the server side of the connection in
/proc/net/tcp, and which worker process holds that socket), so each test sends its requests through the
worker it means. Every guarantee must hold whichever worker answers: an order placed through one worker is
replayed (Idempotency-Key) and paid through the other; 50 identical payments spread over both settle once;
concurrent orders over both never let balance minus holds go negative; a device revoked by the CLI is
refused by both, also by a worker that remembered its token. The cross-process writer lock
(center.db.tx.WriterGate) is checked directly: it is held for exactly the length of a write transaction."""

from __future__ import annotations

import fcntl
import http.client
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from center import ledger
from center.db import tx
from center.db.commerce import LedgerTransfer, LedgerTxn
from center.db.group import GroupCommit
from center.settings import CenterSettings
from tests.center.commerce import Center, SoftDevice
from tests.center.conftest import REPO, LiveServer, Media, add, catalog_for, live_center

pytestmark = pytest.mark.integration
PRICE = 300


def _workers(parent: int) -> set[int]:
    """The worker processes of uvicorn's supervisor `parent` (multiprocessing's spawned children; not its
    resource tracker)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                command = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"spawn_main" in command:
                found.add(int(entry))
    return found


def _server_socket_inode(server_port: int, client_port: int) -> str | None:
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port:
            return fields[9]
    return None


class Connection:
    """One keep-alive HTTP/1.1 connection to the server, and the worker process that accepted it."""

    def __init__(self, server: LiveServer, workers: set[int]) -> None:
        self.port = int(server.url.rsplit(":", 1)[1])
        self.http = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        status, _ = self.request("GET", "/v1/items")  # accepted and answered: the socket is a worker's now
        assert status == 200
        inode = _server_socket_inode(self.port, self.http.sock.getsockname()[1])
        assert inode is not None
        self.worker = next(
            (pid for pid in workers if _holds_socket(pid, inode)), 0
        )  # 0: none of them (the test fails on it)

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        payload = None if body is None else json.dumps(body).encode()
        sent = dict(headers or {})
        if payload is not None:
            sent["Content-Type"] = "application/json"
        self.http.request(method, path, body=payload, headers=sent)
        response = self.http.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None

    def close(self) -> None:
        self.http.close()


def _holds_socket(pid: int, inode: str) -> bool:
    target = f"socket:[{inode}]"
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == target for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def connections(server: LiveServer, per_worker: int) -> tuple[list[Connection], list[Connection]]:
    """`per_worker` connections answered by each of the two workers (opened until both have enough)."""
    workers = _workers(server.process.pid)
    assert len(workers) == 2, workers
    by_worker: dict[int, list[Connection]] = {pid: [] for pid in workers}
    extra: list[Connection] = []
    for _ in range(60 * per_worker):
        conn = Connection(server, workers)
        assert conn.worker in by_worker, "a connection answered by no worker process of the server"
        group = by_worker[conn.worker]
        (group if len(group) < per_worker else extra).append(conn)
        if all(len(g) >= per_worker for g in by_worker.values()):
            break
    for conn in extra:
        conn.close()
    first, second = by_worker.values()
    assert len(first) == len(second) == per_worker, "the kernel gave (nearly) every connection to one worker"
    return first, second


def setup_center(data: Path, media: Media) -> tuple[Center, str]:
    settings = CenterSettings(data_dir=data)
    item = add(catalog_for(settings), media.text, title="Text", price=PRICE)
    return Center(settings), item


def order_headers(device: SoftDevice, key: str) -> dict[str, str]:
    return {**device.headers, "Idempotency-Key": key}


def settles(center: Center, order_id: str) -> tuple[int, int]:
    with tx.read(center.commerce.sessions) as session:
        txns = session.scalar(
            select(func.count())
            .select_from(LedgerTxn)
            .where(LedgerTxn.order_id == order_id, LedgerTxn.kind == "settle")
        )
        posted = session.scalar(
            select(func.count())
            .select_from(LedgerTransfer)
            .where(LedgerTransfer.txn_id == f"settle:{order_id}")
        )
    return int(txns or 0), int(posted or 0)


def test_an_order_placed_through_one_worker_is_replayed_and_paid_through_the_other(
    tmp_path: Path, media: Media
) -> None:
    center, item = setup_center(tmp_path / "c", media)
    device = center.device()
    center.fund(device, 2 * PRICE)
    body = {"item_id": item, "device_id": device.device_id}
    with live_center(tmp_path / "c", "--workers", "2") as server:
        (a,), (b,) = connections(server, 1)
        assert a.worker != b.worker
        status, placed = a.request("POST", "/v1/orders", body, order_headers(device, "order-0001"))
        assert status == 201, placed
        status, again = b.request("POST", "/v1/orders", body, order_headers(device, "order-0001"))
        assert status == 200, again  # the key's existing order, found by the other worker
        assert again == placed
        sealed = device.payment(center.commerce, placed["order"])
        path = f"/v1/orders/{placed['order_id']}/payment"
        status, paid = b.request("POST", path, {"payment": sealed}, device.headers)
        assert status == 200, paid
        status, repeated = a.request("POST", path, {"payment": sealed}, device.headers)
        assert (status, repeated) == (200, paid)  # the same receipt from the worker that took the order
        status, shown = a.request("GET", f"/v1/orders/{placed['order_id']}", None, device.headers)
        assert status == 200
        assert shown["state"] == "paid", shown
        for conn in (a, b):
            conn.close()
    assert settles(center, placed["order_id"]) == (1, 1)
    assert center.balance(ledger.wallet(device.device_id, "JPY")) == PRICE
    assert center.report()["checks"]["ok"]


def test_fifty_identical_payments_over_two_workers_settle_once(tmp_path: Path, media: Media) -> None:
    center, item = setup_center(tmp_path / "c", media)
    device = center.device()
    center.fund(device, 5 * PRICE)
    answer = center.order(device, item).json()
    sealed = device.payment(center.commerce, answer["order"])
    path = f"/v1/orders/{answer['order_id']}/payment"
    with live_center(tmp_path / "c", "--workers", "2") as server:
        first, second = connections(server, 25)
        both = first + second

        def pay(conn: Connection) -> tuple[int, str]:
            status, body = conn.request("POST", path, {"payment": sealed}, device.headers)
            return status, json.dumps(body, sort_keys=True)

        with ThreadPoolExecutor(50) as pool:
            results = list(pool.map(pay, both))
        for conn in both:
            conn.close()
    assert Counter(status for status, _ in results) == {200: 50}, results[:3]
    assert len({body for _, body in results}) == 1  # one receipt
    assert settles(center, answer["order_id"]) == (1, 1)
    assert center.balance(ledger.wallet(device.device_id, "JPY")) == 4 * PRICE
    assert center.balance(ledger.revenue("JPY")) == PRICE
    assert center.report()["checks"]["ok"]


def test_concurrent_orders_over_two_workers_never_overdraw(tmp_path: Path, media: Media) -> None:
    center, item = setup_center(tmp_path / "c", media)
    device = center.device()
    center.fund(device, 10 * PRICE)
    body = {"item_id": item, "device_id": device.device_id}
    with live_center(tmp_path / "c", "--workers", "2") as server:
        first, second = connections(server, 20)
        both = first + second

        def order(n: int) -> int:
            status, _ = both[n].request("POST", "/v1/orders", body, order_headers(device, f"race-{n:04d}"))
            return status

        with ThreadPoolExecutor(40) as pool:
            statuses = Counter(pool.map(order, range(40)))
        for conn in both:
            conn.close()
    assert statuses == {201: 10, 402: 30}, statuses
    assert center.balance(ledger.wallet(device.device_id, "JPY")) == 0
    report = center.report()
    assert report["checks"]["ok"]
    for account in report["accounts"]:
        if ledger.is_limited(account["account"]):
            assert account["available"] >= 0, account


def test_a_device_revoked_by_the_cli_is_refused_by_every_worker(tmp_path: Path, media: Media) -> None:
    center, item = setup_center(tmp_path / "c", media)
    device = center.device()
    center.fund(device, 10 * PRICE)
    body = {"item_id": item, "device_id": device.device_id}
    with live_center(tmp_path / "c", "--workers", "2") as server:
        (a,), (b,) = connections(server, 1)
        for n, conn in enumerate((a, b)):  # each worker now knows the token (its lean path's hint)
            status, placed = conn.request(
                "POST", "/v1/orders", body, order_headers(device, f"before-{n:04d}")
            )
            assert status == 201, placed
        revoked = subprocess.run(
            [
                sys.executable,
                "-m",
                "center",
                "device",
                "revoke",
                device.device_id,
                "--data",
                str(tmp_path / "c"),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        assert revoked.returncode == 0, revoked.stderr
        for n, conn in enumerate((a, b)):
            status, refused = conn.request(
                "POST", "/v1/orders", body, order_headers(device, f"after-{n:04d}")
            )
            assert status == 403, refused
            assert refused["type"].endswith("device-revoked"), refused
            conn.close()
    assert center.report()["checks"]["ok"]


def _try_lock(path: str) -> bool:
    """Whether an exclusive flock on `path` is free now (a descriptor of its own: flock locks belong to
    open file descriptions, so this conflicts with the gate's even in the same process)."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


@contextmanager
def _held(path: str) -> Iterator[Callable[[], None]]:
    """An exclusive flock of `path` held by another process until `let_go()` is called (or the block ends)."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.readline()",
            path,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    with holder:
        assert holder.stdout is not None
        assert holder.stdin is not None
        assert holder.stdout.readline().strip() == "held"
        stdin = holder.stdin

        def let_go() -> None:
            stdin.write("\n")
            stdin.flush()

        yield let_go


def test_the_cross_process_writer_lock_is_held_exactly_while_writing(tmp_path: Path, media: Media) -> None:
    center, _item = setup_center(tmp_path / "c", media)
    engine = center.app.state.center.engine
    path = tx.lock_path(engine)
    assert path == str((tmp_path / "c" / "center.db").resolve()) + tx.LOCK_SUFFIX
    with tx.write(center.commerce.sessions):
        assert Path(path).stat().st_mode & 0o777 == 0o600
        assert not _try_lock(path)
        with tx.writer_gate(engine):  # re-entered in the same thread: still held after the inner exit
            pass
        assert not _try_lock(path)
    assert _try_lock(path)
    group = GroupCommit(engine, center.commerce.sessions)
    seen = group.run(lambda _session: _try_lock(path))
    assert seen is False  # a group commit batch holds it too
    assert _try_lock(path)


def test_a_write_behind_another_process_holding_the_lock_commits_once_it_lets_go(
    tmp_path: Path, media: Media
) -> None:
    center, _item = setup_center(tmp_path / "c", media)
    device = center.device()
    path = tx.lock_path(center.app.state.center.engine)
    assert path is not None
    with _held(path) as let_go, ThreadPoolExecutor(1) as pool:
        funding = pool.submit(center.fund, device, PRICE)
        let_go()
        funding.result(timeout=60)
    assert center.balance(ledger.wallet(device.device_id, "JPY")) == PRICE
    assert center.report()["checks"]["ok"]


@pytest.mark.parametrize("workers", ["0", "65", "two"])
def test_a_bad_worker_count_is_refused_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], workers: str
) -> None:
    from center.cli.app import run

    assert run(["serve", "--data", str(tmp_path / "c"), "--workers", workers]) == 2
    err = capsys.readouterr().err
    assert err.startswith("center: error: ")
    assert err.count("\n") == 1
    assert "workers" in err
    assert not (tmp_path / "c").exists()  # refused before anything was created


def test_a_writer_queues_behind_a_process_waiting_for_its_turn(tmp_path: Path, media: Media) -> None:
    """The processes take turns (center.db.tx): a writer first takes the queue lock, so while another process
    holds the queue (it waits for the write lock, or is about to), this writer waits even though the write
    lock itself is free, and it commits once the queue lets go. Without the queue a process that just wrote
    took the write lock back before a waiting one was scheduled."""
    center, _item = setup_center(tmp_path / "c", media)
    device = center.device()
    path = tx.lock_path(center.app.state.center.engine)
    assert path is not None
    queue = path[: -len(tx.LOCK_SUFFIX)] + tx.QUEUE_SUFFIX
    assert Path(queue).stat().st_mode & 0o777 == 0o600  # made by the writes of setup_center
    with _held(queue) as let_go:
        assert _try_lock(path)  # the write lock itself is free
        with ThreadPoolExecutor(1) as pool:
            funding = pool.submit(center.fund, device, PRICE)
            with pytest.raises(TimeoutError):
                funding.result(timeout=0.5)  # waits in the queue (a bound, not a timing claim)
            assert center.balance(ledger.wallet(device.device_id, "JPY")) == 0
            let_go()
            funding.result(timeout=60)
    assert center.balance(ledger.wallet(device.device_id, "JPY")) == PRICE
    assert _try_lock(queue)  # let go once the write lock was held
    assert center.report()["checks"]["ok"]
