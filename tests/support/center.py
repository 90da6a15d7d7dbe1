"""The real center for tests and benchmarks: one launcher, one enrollment relay, one way to fund and order.

- `RealCenter`: `center serve` as a child process on a free 127.0.0.1 port (real sockets, a real SQLite
  database in its data directory, swtpm's EK CA trusted), its admin commands (`center item add`, `credit
  issue`) as the seller types them, and the same admin services in this process (`add_content`,
  `issue_code`) where a test registers many items or credits and a subprocess each would cost seconds.
- `enroll()`: flow 3 relayed the way terminal_cli relays it (identity → MakeCredential → ActivateCredential →
  the signed enrollment and the welcome credit), against any device service reachable over HTTP.
- `Account`: an enrolled device's side at the center: redeem a credit, place an order, download its content
  stream, settle a payment (the receipt), all over HTTP.

Every order, credit, enrollment and receipt a test gets here is signed by the real center. What the center
must never produce (forged, expired, replayed messages) comes from tests/support/forger.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
#: The center refuses more unpaid deliveries per device than this (its default is 2); flow tests that do not
#: relay every payment raise it with the center's own setting.
MANY_UNPAID = 1000


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_http(
    url: str, process: subprocess.Popen[bytes], timeout: float = 60.0, log: Path | None = None
) -> None:
    """Poll `url` until it answers 200; fail at once if the server exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
            raise RuntimeError(f"{url}: the server exited with {process.returncode}\n{tail}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2.0, trust_env=False).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def stop(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM, then SIGKILL after 20 s; the exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@dataclass
class RealCenter:
    """`center serve` with its data directory, trusting `ek_ca` (swtpm's local CA bundle), on host:port."""

    data: Path
    ek_ca: Path
    welcome_credit: int = 1000
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    extra: tuple[str, ...] = ()
    issuer: str | None = None  # when served under another URL (HTTPS): admin commands sign with it too
    env: dict[str, str] = field(default_factory=dict)  # COFFER_CENTER_* settings of the server
    log: Path | None = None  # the server's stdout/stderr (default: next to the data directory)
    process: subprocess.Popen[bytes] | None = None
    item_ids: list[str] = field(default_factory=list)
    _commerce: Any = field(default=None, repr=False)
    _engine: Any = field(default=None, repr=False)

    @property
    def listen(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.listen}"

    @property
    def admin_env(self) -> dict[str, str]:
        """Admin commands sign with the server's issuer (its listen address) and share its settings."""
        issuer = {"COFFER_CENTER_ISSUER": self.issuer} if self.issuer else {}
        return {**os.environ, **self.env, "COFFER_CENTER_LISTEN": self.listen, **issuer}

    # -- the seller's commands ------------------------------------------------------------------------------

    def build(self) -> RealCenter:
        """The sample catalog (`center.demo`, as `make demo` builds it)."""
        from center.demo import build_demo_catalog

        self.item_ids = build_demo_catalog(self.data, self.listen)
        return self

    def admin(self, *args: str) -> Any:
        """`center ARGS --data DATA --json` on the server host; its JSON answer."""
        result = subprocess.run(
            [sys.executable, "-m", "center", *args, "--data", str(self.data), "--json"],
            cwd=ROOT,
            env=self.admin_env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, f"center {args}: {result.stderr}"
        return json.loads(result.stdout) if result.stdout.strip().startswith(("{", "[")) else result.stdout

    def add_item(self, files: Sequence[Path], title: str, price: int, preview: Path | None = None) -> str:
        trial = ["--preview", str(preview)] if preview else []
        answer = self.admin(
            "item", "add", *map(str, files), "--title", title, "--price", str(price),
            "--currency", "JPY", *trial,
        )  # fmt: skip
        item_id: str = answer["item_id"]
        return item_id

    def credit(self, device_id: str, amount: int) -> str:
        """`center credit issue --prepaid AMOUNT JPY`: the one-time code it prints."""
        result = subprocess.run(
            [sys.executable, "-m", "center", "credit", "issue", "--device", device_id,
             "--prepaid", str(amount), "JPY", "--data", str(self.data)],
            cwd=ROOT, env=self.admin_env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    # -- the same admin services, in this process ----------------------------------------------------------

    def settings(self) -> Any:
        from center.settings import CenterSettings

        return CenterSettings(data_dir=self.data, listen=self.listen, issuer=self.issuer)

    @contextlib.contextmanager
    def commerce(self) -> Iterator[Any]:
        """The center's `Commerce` (keys, database, blobs) on the server's data, as its CLI builds it; opened
        once and closed by `stop()`."""
        if self._commerce is None:
            from center.blobs import LocalBlobStore
            from center.db.engine import make_engine, session_factory, upgrade
            from center.keys import load_or_create
            from center.services.common import Commerce

            settings = self.settings()
            settings.prepare_data_dir()
            engine = make_engine(settings.sqlalchemy_url())
            try:
                upgrade(engine)
                keys = load_or_create(settings.keys_dir, None, create=False)
            except BaseException:
                engine.dispose()
                raise
            self._engine = engine
            self._commerce = Commerce(
                session_factory(engine), keys, settings, LocalBlobStore(settings.blobs_dir)
            )
        yield self._commerce

    def add_content(
        self, content: bytes, *, title: str = "Item", price: int = 100, name: str = "item.bin"
    ) -> str:
        """Register `content` as one item (the center's CatalogService, as `center item add` runs it)."""
        with tempfile.TemporaryDirectory(dir=self.data) as tmp:
            path = Path(tmp) / name
            path.write_bytes(content)
            return self.add_file(path, title=title, price=price)

    def add_file(self, path: Path, *, title: str = "Item", price: int = 100) -> str:
        """Register the file at `path` as one item, with a short text as the seller's trial preview (test
        content is random bytes, which the center cannot preview itself)."""
        from center.services.catalog import CatalogService, NewItem, parse_price

        with self.commerce() as commerce, tempfile.TemporaryDirectory(dir=self.data) as tmp:
            trial = Path(tmp) / "trial.txt"
            trial.write_text(f"A trial of {title}.\n")
            catalog = CatalogService(commerce.sessions, commerce.blobs, self.data / "tmp")
            item = catalog.add_item(NewItem([path], title, parse_price(price, "JPY"), "", trial))
        item_id: str = item.item_id
        return item_id

    def issue_code(
        self, device_id: str, amount: int | None = 1000, *, kind: str = "prepaid", item_id: str | None = None
    ) -> str:
        """A one-time credit code (the center's CreditService, as `center credit issue` runs it)."""
        from center.services.credits import CreditService, NewCredit

        if kind == "ticket":
            new = NewCredit(device_id, "ticket", item_id=item_id)
        else:
            new = NewCredit(device_id, kind, amount, "JPY")
        with self.commerce() as commerce:
            code, _ = CreditService(commerce).issue(new)
        return code

    @property
    def root_fingerprint(self) -> str:
        """The center root key's fingerprint (`center keys show`), as a board pins it."""
        with self.commerce() as commerce:
            fingerprint: str = commerce.keys.root_fingerprint
        return fingerprint

    def open_payment(self, order_id: str, sealed_b64: str) -> str:
        """A device's sealed payment opened with the center's payment key (what settlement reads): its JWS."""
        from protocol import hpke
        from protocol.b64 import b64url_decode

        with self.commerce() as commerce:
            key = commerce.keys.payment
        return hpke.open(key, b64url_decode(sealed_b64), info=hpke.payment_info(order_id)).decode()

    # -- the server ------------------------------------------------------------------------------------------

    def serve_argv(self) -> list[str]:
        return [
            sys.executable, "-m", "center", "serve", "--data", str(self.data), "--listen", self.listen,
            "--ek-ca", str(self.ek_ca), "--welcome-credit", str(self.welcome_credit), *self.extra,
        ]  # fmt: skip

    def start(self, timeout: float = 60.0) -> RealCenter:
        """Start `center serve` (children inherit the calling thread's network namespace) and wait for it."""
        self.data.parent.mkdir(parents=True, exist_ok=True)
        log = self.log or self.data.parent / f"center-{self.port}.log"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                self.serve_argv(),
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_http(f"{self.url}/v1/health", self.process, timeout, log)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = self._commerce = None

    def __enter__(self) -> RealCenter:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(self, timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout, trust_env=False)


def ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text}"
    return r.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Account:
    """An enrolled device as the center knows it: its device_id and the bearer token the center gave it."""

    center: httpx.Client
    device_id: str
    token: str
    enrollment: str
    root_jwk: dict[str, str]
    welcome_credit: str | None
    accepted: dict[str, Any] = field(default_factory=dict)  # the device's answer to the enrollment

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)

    def redeem(self, code: str) -> str:
        """POST /v1/credits/redeem: the signed credit for the device."""
        answer = ok(
            self.center.post(
                "/v1/credits/redeem", json={"code": code, "device_id": self.device_id}, headers=self.headers
            )
        )
        credit: str = answer["credit"]
        return credit

    def prepaid(self, center: RealCenter, amount: int) -> str:
        """A prepaid credit as a user gets one: a code the center issued, redeemed (not yet on the device)."""
        return self.redeem(center.issue_code(self.device_id, amount))

    def order(self, item_id: str, *, key: str | None = None) -> dict[str, Any]:
        """POST /v1/orders with an idempotency key: the answer (order JWS, order_id, content_url, ...)."""
        body = {"item_id": item_id, "device_id": self.device_id}
        headers = {**self.headers, "Idempotency-Key": key or secrets.token_urlsafe(16)}
        answer: dict[str, Any] = ok(self.center.post("/v1/orders", json=body, headers=headers), 201)
        return answer

    def content(self, order: Mapping[str, Any]) -> bytes:
        """The order's content stream, as the center serves it."""
        r = self.center.get(order["content_url"], headers=self.headers)
        assert r.status_code == 200, r.text
        return r.content

    def bought(self, item_id: str, **kw: Any) -> tuple[dict[str, Any], bytes]:
        """An order and its content stream."""
        order = self.order(item_id, **kw)
        return order, self.content(order)

    def pay(self, order_id: str, payment: str) -> str:
        """Relay a sealed payment; the center's signed receipt."""
        answer = ok(
            self.center.post(
                f"/v1/orders/{order_id}/payment", json={"payment": payment}, headers=self.headers
            )
        )
        receipt: str = answer["receipt"]
        return receipt


def attest(center: httpx.Client, device: httpx.Client, device_token: str) -> dict[str, Any]:
    """The center's part of flow 3, relayed as terminal_cli does: identity -> MakeCredential -> the device's
    ActivateCredential -> the center's `EnrollmentAnswer` (not yet given to the device)."""
    identity = ok(device.get("/v1/identity"))
    challenge = ok(center.post("/v1/devices", json=identity), 201)
    secret = ok(
        device.post(
            "/v1/activate",
            json={k: challenge[k] for k in ("credential_blob", "encrypted_secret")},
            headers=bearer(device_token),
        )
    )
    answer: dict[str, Any] = ok(
        center.post(
            f"/v1/devices/{identity['device_id']}/activate",
            json={"challenge_id": challenge["challenge_id"], **secret},
        )
    )
    return answer


def enroll(center: httpx.Client, device: httpx.Client, device_token: str) -> Account:
    """Flow 3: `attest`, then the device accepts the enrollment (the welcome credit is left to the caller)."""
    answer = attest(center, device, device_token)
    accepted = ok(
        device.post(
            "/v1/enrollment",
            json={"enrollment": answer["enrollment"], "root_jwk": answer["root_jwk"]},
            headers=bearer(device_token),
        )
    )
    return Account(
        center,
        answer["device_id"],
        answer["device_token"],
        answer["enrollment"],
        answer["root_jwk"],
        answer.get("welcome_credit"),
        accepted,
    )


def claims(token: str) -> dict[str, Any]:
    """A JWS's payload members, unverified (to read what the real center chose: aead, segment_size, exp)."""
    from protocol.b64 import b64url_decode

    payload: dict[str, Any] = json.loads(b64url_decode(token.split(".")[1]))
    return payload


@contextlib.contextmanager
def shared_center(directory: Path, ek_ca: Path, **env: str) -> Iterator[RealCenter]:
    """A center several tests share (a directory's session): no welcome credit (every swtpm copy has the same
    EK, so only the first device would get it), unpaid deliveries not capped (tests that do not relay every
    payment), more `COFFER_CENTER_*` settings in `env`."""
    settings = {"COFFER_CENTER_MAX_UNPAID": str(MANY_UNPAID), **env}
    with RealCenter(directory / "center", ek_ca, welcome_credit=0, env=settings) as center:
        yield center
