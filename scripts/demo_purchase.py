"""`make demo`, stage 5: a purchase on the simulated board, from the center's catalog to opened content.

What is real: the catalog item and its bytes (the center's blob store), the center's keys (its key files),
the board (the device service in its network namespace, on usb0 of the veth link, on its swtpm) and all the
board does: verify, unwrap Ke in the TPM, decrypt while re-encrypting under the DEK, one commit with the
payment signed in the TPM, receipts, the library with Range.

What is played: the center's enrollment, order and settlement APIs are not built yet (no issue has asked for
them), so this stage does the center's side of flows 3, 5 and 6 with `protocol` and the center's own key
files, as the center will: the enrollment (`--allow-unattested` in DESIGN's terms: no MakeCredential here), a
prepaid credit, the order (a fresh Ke, content stream v1, HPKE-wrapped to the board's KEM key, signed),
opening the payment with the center's payment key, and the receipt. The terminal's part (forwarding) is this
script.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from rich.console import Console
from sqlalchemy import select

from center.blobs import LocalBlobStore
from center.db.engine import make_engine
from center.db.models import Item
from center.keys import CenterKeys, load_or_create
from center.settings import CenterSettings
from protocol import hpke, jws, stream
from protocol.b64 import b64url_decode, b64url_encode
from protocol.keys import jwk_from_public_key, public_key_from_jwk
from protocol.messages import Credit, Enrollment, Order, Payment, Receipt, message_hash
from protocol.money import Money

UPLOAD_CHUNK = 256 * 1024


def expect(response: httpx.Response, status: int, what: str) -> httpx.Response:
    """`response` if it has `status`; else the demo stops with a one-line message."""
    if response.status_code != status:
        raise SystemExit(f"demo: {what} answered {response.status_code}: {response.text}")
    return response


def _item_content(settings: CenterSettings, item_id: str) -> tuple[str, int, LocalBlobStore]:
    """(hex SHA-256, length, blob store) of a catalog item's content, read from the center's own database."""
    engine = make_engine(settings.sqlalchemy_url())
    try:
        with engine.connect() as db:
            row = db.execute(
                select(Item.content_sha256, Item.content_length).where(Item.item_id == item_id)
            ).one()
    finally:
        engine.dispose()
    return row[0], row[1], LocalBlobStore(settings.blobs_dir)


def _stream_file(blobs: LocalBlobStore, sha256: str, ke: bytes, aead: str, path: Path) -> int:
    """The order's content stream v1 under `ke`, written to `path` (never whole in memory); its size."""
    with path.open("wb") as out:
        for chunk in stream.encrypt_iter(blobs.iter_chunks(sha256), ke, aead=aead):
            out.write(chunk)
    return path.stat().st_size


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(UPLOAD_CHUNK):
            yield chunk


def run(
    console: Console,
    *,
    center_data: Path,
    center_listen: str,
    board_base: str,
    pin: str,
    work: Path,
    item_title: str = "Moving shapes",
) -> None:
    settings = CenterSettings(data_dir=center_data, listen=center_listen)
    keys: CenterKeys = load_or_create(settings.keys_dir, settings.issuer_url(), create=False)
    issuer = settings.issuer_url()
    center_base = f"http://{center_listen}"
    signer = jws.SoftwareSigner(keys.signing)

    def sign(payload: object) -> str:
        return jws.sign(payload, signer)  # type: ignore[arg-type]

    items = httpx.get(f"{center_base}/v1/items").json()["items"]
    item = next(i for i in items if i["title"] == item_title)
    price = Money.model_validate(item["price"])

    with httpx.Client(base_url=board_base, timeout=60.0) as board:
        identity = expect(board.get("/v1/identity"), 200, "identity").json()
        device_id: str = identity["device_id"]
        token = expect(board.post("/v1/unlock", json={"pin": pin}), 200, "unlock").json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        now = int(time.time())

        enrollment = Enrollment(
            iss=issuer,
            iat=now,
            device_id=device_id,
            keyset=keys.keyset_jws,
            device_token_hash=b64url_encode(hashlib.sha256(secrets.token_bytes(32)).digest()),
        )
        request = {"enrollment": sign(enrollment), "root_jwk": jwk_from_public_key(keys.root.public_key())}
        expect(board.post("/v1/enrollment", json=request, headers=auth), 200, "enrollment")
        console.print(
            f"  enrolled with the center (played: its enrollment API is not built yet); root pinned on first "
            f"use: {keys.root_fingerprint[:16]}…"
        )
        credit = Credit(
            iss=issuer,
            iat=now,
            credit_id=f"cr_demo_{secrets.token_hex(6)}",
            device_id=device_id,
            kind="prepaid",
            amount=Money(amount=1000, currency="JPY"),
            exp=now + 30 * 86400,
        )
        expect(board.post("/v1/credits", json={"credit": sign(credit)}, headers=auth), 200, "credit")
        wallet = expect(board.get("/v1/wallet", headers=auth), 200, "wallet").json()
        console.print(f"  prepaid credit accepted: purses {wallet['purses']['prepaid']}")

        # flow 5.1, the center's order: a fresh Ke, the item's bytes as content stream v1, Ke wrapped
        sha256, length, blobs = _item_content(settings, item["item_id"])
        order_id = f"ord_demo_{secrets.token_hex(8)}"
        ke = os.urandom(32)
        aead = identity["aead"]
        stream_path = work / f"{order_id}.cfs"
        size = _stream_file(blobs, sha256, ke, aead, stream_path)
        kem = public_key_from_jwk(identity["kem_jwk"])
        order = sign(
            Order(
                iss=issuer,
                iat=now,
                order_id=order_id,
                item_id=item["item_id"],
                device_id=device_id,
                price=price,
                content_sha256=sha256,
                content_length=length,
                aead=aead,
                segment_size=stream.DEFAULT_SEGMENT_SIZE,
                wrapped_key=b64url_encode(hpke.seal(kem, ke, info=hpke.content_key_info(order_id))),
                exp=now + 3600,
            )
        )
        console.print(
            f"  order {order_id} for {item['title']!r} ({price}): fresh Ke, {size} B content stream "
            f"({aead}), Ke HPKE-wrapped to the board's TPM key"
        )

        # flow 5.2/5.3: the terminal streams it into the board over the USB link
        headers = {**auth, "Coffer-Order": order, "Content-Type": "application/octet-stream"}
        headers["Content-Length"] = str(size)
        started = time.perf_counter()
        answer = expect(
            board.post(
                "/v1/purchases", params={"mode": "now"}, content=_chunks(stream_path), headers=headers
            ),
            200,
            "purchase",
        ).json()
        elapsed = time.perf_counter() - started
        stream_path.unlink()
        console.print(
            f"  purchase on the board in {elapsed * 1000:.0f} ms: Ke unwrapped in the TPM (ECDH_ZGen), "
            f"content re-encrypted under the DEK, one commit (counter {answer['counter']})"
        )

        # flow 5.4: the center opens and checks the payment, and answers a receipt
        payment_jws = hpke.open(
            keys.payment, b64url_decode(answer["payment"]), info=hpke.payment_info(order_id)
        ).decode("ascii")
        payer = public_key_from_jwk(identity["payment_jwk"])
        payment = jws.verify(payment_jws, Payment, keys=payer, now=now)
        if payment.order_hash != message_hash(order) or payment.device_id != device_id:
            raise SystemExit("demo: the payment does not name this order and board")
        debits = ", ".join(f"{d.purse} {d.amount}" for d in payment.debits)
        console.print(
            f"  payment opened with the center's key, signature checked against the board's TPM key: "
            f"debits {debits}, counter {payment.counter}"
        )
        receipt = Receipt(
            iss=issuer,
            iat=now,
            order_id=order_id,
            device_id=device_id,
            payment_hash=message_hash(payment_jws),
        )
        expect(board.post("/v1/receipts", json={"receipt": sign(receipt)}, headers=auth), 200, "receipt")
        outbox = expect(board.get("/v1/outbox", headers=auth), 200, "outbox").json()["entries"]
        console.print(f"  receipt accepted: {len(outbox)} payments left in the outbox")
        again = board.post("/v1/purchases", content=b"", headers={**auth, "Coffer-Order": order})
        console.print(
            f"  the same order again: {again.status_code} {again.json().get('title')} (never debited twice)"
        )

        # flow 5.6: open what was bought
        library = expect(board.get("/v1/library", headers=auth), 200, "library").json()
        detail = httpx.get(f"{center_base}/v1/items/{item['item_id']}").json()
        suffix = mimetypes.guess_extension(detail["content_media_type"]) or ".bin"
        opened = work / f"opened-{item['item_id']}{suffix}"
        digest = hashlib.sha256()
        with board.stream("GET", f"/v1/library/{item['item_id']}/content", headers=auth) as response:
            expect(response, 200, "open")
            with opened.open("wb") as out:
                for chunk in response.iter_bytes():
                    digest.update(chunk)
                    out.write(chunk)
        if digest.hexdigest() != sha256:
            raise SystemExit("demo: the opened content differs from the catalog's")
        head = expect(
            board.get(f"/v1/library/{item['item_id']}/content", headers={**auth, "Range": "bytes=4-11"}),
            206,
            "range",
        )
        wallet = expect(board.get("/v1/wallet", headers=auth), 200, "wallet").json()
        console.print(
            f"  opened: {opened} ({opened.stat().st_size} B, SHA-256 equal to the catalog's), "
            f"bytes 4-11 by Range: {head.content!r}; library {len(library['items'])} item(s), "
            f"purses {wallet['purses']['prepaid']}"
        )
        expect(board.post("/v1/lock", headers=auth), 204, "lock")


__all__ = ["expect", "run"]
