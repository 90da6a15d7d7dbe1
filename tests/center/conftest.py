"""Fixtures for the center's tests: generated media, settings, an app client, a live server, PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from center import samples
from center.api.app import create_app
from center.blobs import LocalBlobStore
from center.db.engine import make_engine, session_factory, upgrade
from center.services.catalog import CatalogService, NewItem, parse_price
from center.settings import CenterSettings

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "center"
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Media:
    image: Path
    jpeg: Path
    text: Path
    audio: Path
    long_audio: Path
    video: Path
    pdf: Path
    other: Path
    trial: Path


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    """Small media the tests generate; deliberately misleading names (kinds come from decoders)."""
    d = tmp_path_factory.mktemp("media")
    other = d / "archive.dat"
    with zipfile.ZipFile(other, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("payload.bin", bytes((i * 7919) % 251 for i in range(300_000)))
    trial = d / "trial.dat"
    with zipfile.ZipFile(trial, "w") as z:
        z.writestr("readme.txt", "A trial of the archive.\n" * 20)
    return Media(
        image=samples.make_image(d / "picture.txt"),
        jpeg=samples.make_image(d / "photo.jpg", 900, 1400, "JPEG"),
        text=samples.make_text(d / "story.md"),
        audio=samples.make_wav(d / "tune.png", seconds=4.0),
        long_audio=samples.make_wav(d / "long.wav", seconds=36.0, rate=8000),
        video=samples.make_video(d / "clip.mp4", seconds=2.0),
        pdf=samples.make_pdf(d / "paper.bin"),
        other=other,
        trial=trial,
    )


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., CenterSettings]:
    def build(**overrides: object) -> CenterSettings:
        values: dict[str, object] = {"data_dir": tmp_path / "center"}
        values.update(overrides)
        return CenterSettings(**values)  # type: ignore[arg-type]

    return build


@pytest.fixture
def settings(make_settings: Callable[..., CenterSettings]) -> CenterSettings:
    return make_settings()


_ENGINES: list[Engine] = []
_CATALOGS: list[CatalogService] = []


@pytest.fixture(autouse=True)
def _dispose_engines() -> Iterator[None]:
    """Close every pool a test opened (a connection left to the garbage collector is a test error)."""
    yield
    while _CATALOGS:
        _CATALOGS.pop().close()
    while _ENGINES:
        _ENGINES.pop().dispose()


def catalog_for(settings: CenterSettings) -> CatalogService:
    settings.prepare_data_dir()
    engine = make_engine(settings.sqlalchemy_url())
    _ENGINES.append(engine)
    upgrade(engine)
    catalog = CatalogService(
        session_factory(engine), LocalBlobStore(settings.blobs_dir), settings.data_dir / "tmp"
    )
    _CATALOGS.append(catalog)
    return catalog


@pytest.fixture
def catalog(settings: CenterSettings) -> CatalogService:
    return catalog_for(settings)


def add(
    catalog: CatalogService,
    *files: Path,
    title: str = "Item",
    price: int = 500,
    preview: Path | None = None,
    description: str = "",
) -> str:
    item = catalog.add_item(NewItem(list(files), title, parse_price(price, "JPY"), description, preview))
    return item.item_id


class AppClient:
    """A synchronous client over httpx's ASGI transport (no sockets): for pure app unit tests."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
                return await c.request(method, url, **kwargs)

        return asyncio.run(go())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)


@pytest.fixture
def client(settings: CenterSettings, catalog: CatalogService) -> AppClient:
    app = create_app(settings)
    _ENGINES.append(app.state.center.engine)
    return AppClient(app)


@dataclass
class LiveServer:
    url: str
    data: Path
    process: subprocess.Popen[bytes]
    log: Path


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, verify: object = True) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"center exited with {process.returncode}: {log.read_text()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url + "/v1/health", verify=verify, timeout=2).status_code == 200:  # type: ignore[arg-type]
                return
        time.sleep(0.1)
    raise AssertionError(f"center did not start: {log.read_text()}")


def start_center(data: Path, *extra: str, scheme: str = "http", verify: object = True) -> LiveServer:
    port = free_port()
    log = data.parent / f"center-{port}.log"
    data.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "center",
                "serve",
                "--data",
                str(data),
                "--listen",
                f"127.0.0.1:{port}",
                *extra,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    url = f"{scheme}://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, log, verify)
    except BaseException:
        stop_center(process)
        raise
    return LiveServer(url, data, process, log)


def stop_center(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def live_center(data: Path, *extra: str, scheme: str = "http", verify: object = True) -> Iterator[LiveServer]:
    server = start_center(data, *extra, scheme=scheme, verify=verify)
    try:
        yield server
    finally:
        stop_center(server.process)


@dataclass(frozen=True)
class Postgres:
    url: str
    port: int


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A real PostgreSQL 15 (Debian's): initdb + postgres as the `postgres` user in a temporary directory."""
    for binary in ("initdb", "postgres", "pg_isready"):
        if not (PG_BIN / binary).is_file():
            pytest.fail(f"PostgreSQL binary missing: {PG_BIN / binary} (apt-get install postgresql)")
    if shutil.which("runuser") is None:
        pytest.fail("runuser is missing (util-linux)")
    base = Path(tempfile.mkdtemp(prefix="coffer-pg-"))
    data, sockets = base / "data", base / "sock"
    sockets.mkdir()
    shutil.chown(base, "postgres", "postgres")
    shutil.chown(sockets, "postgres", "postgres")
    as_pg = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    process = None
    try:
        subprocess.run(
            [
                *as_pg,
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )
        with open(base / "postgres.log", "wb") as log:
            process = subprocess.Popen(
                [
                    *as_pg,
                    str(PG_BIN / "postgres"),
                    "-D",
                    str(data),
                    "-k",
                    str(sockets),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-c",
                    "fsync=off",
                    "-c",
                    "full_page_writes=off",
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + 60
        while (
            subprocess.run(
                [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True
            ).returncode
            != 0
        ):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"postgres did not start: {(base / 'postgres.log').read_text()}")
            time.sleep(0.1)
        yield Postgres(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", port)
    finally:
        if process is not None and process.poll() is None:
            pid_file = data / "postmaster.pid"
            if pid_file.exists():  # signal the postmaster itself: runuser does not pass signals on
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)  # fast shutdown
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def env_without_center() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("COFFER_CENTER_")}
