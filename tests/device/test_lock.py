"""Lock really locks (issue 12 #9): a failed unlock leaves nothing resident, an open content stream stops at
the next segment, a deferred item's first open does not hold the commit lock while it re-encrypts (lock
completes meanwhile; the open then commits nothing), and after lock no key, PIN or DEK is reachable from the
device's objects."""

from __future__ import annotations

import gc
import json
import threading
import types
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from device_os.core.device import Device
from device_os.core.wallet import Wallet
from device_os.errors import Locked, Tampered
from protocol import stream
from tests.device.conftest import PIN, CoreCenter

pytestmark = pytest.mark.swtpm
BIG = bytes(range(256)) * 4096  # 1 MiB: 16 of the center's 64 KiB segments
WAIT = 60.0  # a guard against a hang, never a timing assertion


def _buy(device: Device, real: CoreCenter, item: str, mode: str = "now") -> tuple[Wallet, str]:
    """The real center's order for `item` (1 MiB), bought: the wallet and the center's item_id."""
    wallet = device.wallet()
    wallet.apply_credit(real.credit(device.device_id, amount=1000))
    order, s = real.order(device.device_id, item, 100, BIG)
    wallet.purchase(order, [s[i : i + 65536] for i in range(0, len(s), 65536)], mode=mode)  # type: ignore[arg-type]
    return wallet, real.item(item)


def _snapshot(device: Device) -> tuple[int, bytes, list[str]]:
    return device.tpm.counter_read(), device.store.state_path.read_bytes(), device.content.listing()


def test_a_failed_unlock_after_the_keys_loaded_leaves_nothing_resident(ready: Device) -> None:
    device = ready
    device.lock()
    identity = device.data_dir / "keys" / "identity.json"
    document = json.loads(identity.read_text())
    identity.write_text(json.dumps({**document, "aead": "rot13"}))  # fails after unseal and key loading
    with pytest.raises(Tampered):
        device.unlock(PIN)
    assert device.tpm._hot == []  # no hot key (with its PIN as auth) left in the adapter
    assert device._session is None
    assert device._pin_check is None
    assert secrets_reachable([device], PIN.encode(), None) == []


def test_an_open_stream_stops_decrypting_at_lock(ready: Device, real: CoreCenter) -> None:
    device = ready
    wallet, film = _buy(device, real, "film")
    whole = wallet.open_item(film)
    part = wallet.read_range(film, 0, len(BIG))
    assert next(whole)
    assert next(part)
    device.lock()
    with pytest.raises(Locked):
        next(whole)
    with pytest.raises(Locked):
        next(part)


def test_lock_completes_while_a_first_open_reencrypts(ready: Device, real: CoreCenter) -> None:
    device = ready
    wallet, film = _buy(device, real, "film", mode="deferred")
    before = _snapshot(device)
    started, release = threading.Event(), threading.Event()
    raw_chunks = device.content.raw_chunks

    def slow_chunks(blob_id: str) -> Iterator[bytes]:  # the real blob, held halfway by the test
        for i, chunk in enumerate(raw_chunks(blob_id)):
            if i == 2:
                started.set()
                release.wait(WAIT)
            yield chunk

    device.content.raw_chunks = slow_chunks  # type: ignore[method-assign]
    outcome: list[BaseException | bytes] = []

    def first_open() -> None:
        try:
            outcome.append(next(wallet.open_item(film)))
        except BaseException as exc:
            outcome.append(exc)

    opener = threading.Thread(target=first_open)
    opener.start()
    assert started.wait(WAIT)
    locker = threading.Thread(target=device.lock)
    locker.start()
    locker.join(WAIT)
    locked_while_reencrypting = not locker.is_alive() and not release.is_set()
    release.set()
    locker.join(WAIT)
    opener.join(WAIT)
    assert locked_while_reencrypting  # ordering: lock returned while the re-encryption was still held
    assert len(outcome) == 1
    assert isinstance(outcome[0], Locked)
    assert _snapshot(device) == before  # nothing committed, the half-written blob removed
    device.unlock(PIN)
    assert device.wallet().body.library[film].mode == "deferred"
    assert b"".join(device.wallet().open_item(film)) == BIG  # a later first open still works


def test_after_lock_no_key_pin_or_dek_is_reachable(ready: Device, real: CoreCenter) -> None:
    device = ready
    wallet, film = _buy(device, real, "film")
    session = device._session
    assert session is not None
    dek = session.dek
    stream_in_flight = wallet.open_item(film)
    next(stream_in_flight)
    device.lock()
    assert device.tpm._hot == []
    found = secrets_reachable([device, wallet, device.tpm], PIN.encode(), dek)
    assert found == []


def test_a_stream_left_open_lets_go_of_the_dek_at_lock(ready: Device, real: CoreCenter) -> None:
    """A reader that stops reading (a client that never asks for the next segment) does not keep the DEK or
    a stream cipher alive past the lock: the lock closes its generator, not its next read."""
    device = ready
    wallet, film = _buy(device, real, "film")
    session = device._session
    assert session is not None
    dek = session.dek
    whole = wallet.open_item(film)
    part = wallet.read_range(film, 70_000, 500_000)
    assert next(whole)
    assert next(part)
    assert secrets_reachable([whole, part], PIN.encode(), dek) != []  # the test sees what it looks for
    device.lock()
    assert secrets_reachable([whole, part], PIN.encode(), dek) == []
    for stream_ in (whole, part):
        with pytest.raises(Locked):
            next(stream_)


def secrets_reachable(roots: Iterable[object], pin: bytes, dek: bytes | None) -> list[str]:
    """What of the PIN, the DEK, a live stream cipher or a loaded key handle can be reached from `roots`
    through instance attributes and containers (classes, modules and functions are not followed)."""
    skip = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.CodeType)
    found: list[str] = []
    seen: set[int] = set()
    todo: list[Any] = list(roots)
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        if isinstance(obj, bytes | bytearray | memoryview | str):
            data = obj.encode() if isinstance(obj, str) else bytes(obj)
            if pin in data or (dek and dek in data):
                found.append(f"{type(obj).__name__} of {len(data)} bytes")
            continue
        if isinstance(obj, stream.Decryptor | stream.Encryptor):
            found.append(type(obj).__name__)
        if type(obj).__name__ == "_HotKey" and (obj.auth is not None or obj.handle is not None):
            found.append("a hot key with its PIN or handle")
        if isinstance(obj, threading.Thread | Callable) and not isinstance(obj, types.MethodType):
            continue  # threads and callables (the TPM worker's executor, locks) lead back to everything
        todo.extend(gc.get_referents(obj))
    return found
