"""The commit protocol and start-up recovery over a Counter (unit level: a fake counter; swtpm elsewhere)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from device_os.core import statedoc
from device_os.core.store import StateStore
from device_os.errors import Tampered, Unavailable
from tests.device.fakes import FakeCounter


def doc(counter: int, body: bytes = b"x") -> bytes:
    return statedoc.build(counter, body, dek=b"k" * 32, device_id="dev_" + "a" * 32, aead="aes-256-gcm")


def fresh(tmp_path: Path, value: int = 5) -> tuple[StateStore, FakeCounter]:
    counter = FakeCounter(value)
    store = StateStore(tmp_path, counter)
    rec = store.recover()
    assert not rec.state_present
    assert not rec.consistent
    store.commit(doc, first=True)
    return store, counter


def test_commit_sequence(tmp_path: Path) -> None:
    store, counter = fresh(tmp_path)
    assert store.counter == counter.value == 6
    assert store.commit(lambda c: doc(c, b"two")) == 7
    assert statedoc.parse_header(store.read()) == 7
    assert not store.next_path.exists()
    rec = StateStore(tmp_path, counter).recover()
    assert rec.consistent
    assert not rec.rolled_forward
    assert not rec.discarded_next


def test_refusal_in_build_writes_nothing(tmp_path: Path) -> None:
    store, counter = fresh(tmp_path)
    before = store.read()

    def refuse(c: int) -> bytes:
        raise Tampered("no")

    with pytest.raises(Tampered):
        store.commit(refuse)
    assert store.read() == before
    assert counter.value == 6
    assert not store.next_path.exists()
    with pytest.raises(ValueError, match="header"):
        store.commit(lambda c: doc(c + 1))
    assert counter.value == 6
    assert not store.next_path.exists()


def test_before_increment_runs_after_next_is_durable(tmp_path: Path) -> None:
    store, counter = fresh(tmp_path)
    seen: list[tuple[int, bool, int]] = []

    def check() -> None:  # what a purchase's wait for its blob sees: state.next complete, counter unmoved
        seen.append(
            (statedoc.parse_header(store.next_path.read_bytes()), store.state_path.exists(), counter.value)
        )

    assert store.commit(lambda c: doc(c, b"two"), before_increment=check) == 7
    assert seen == [(7, True, 6)]
    assert counter.value == 7


def test_before_increment_failure_commits_nothing(tmp_path: Path) -> None:
    store, counter = fresh(tmp_path)
    before = store.read()

    def blob_lost() -> None:
        raise OSError("fsync of the blob failed")

    with pytest.raises(OSError, match="blob"):
        store.commit(lambda c: doc(c, b"two"), before_increment=blob_lost)
    assert store.read() == before
    assert counter.value == 6
    assert not store.next_path.exists()
    assert store.commit(lambda c: doc(c, b"two")) == 7  # the store is not broken by it


def test_first_commit_only_once(tmp_path: Path) -> None:
    store, _ = fresh(tmp_path)
    with pytest.raises(Tampered):
        store.commit(doc, first=True)


def test_recovery_rolls_forward_next_at_counter(tmp_path: Path) -> None:
    store, counter = fresh(tmp_path)
    store.next_path.write_bytes(doc(7, b"new"))
    counter.value = 7  # the increment happened, the rename did not
    rec = StateStore(tmp_path, counter).recover()
    assert rec.rolled_forward
    assert rec.consistent
    assert rec.state_counter == 7
    assert not store.next_path.exists()


@pytest.mark.parametrize("content", [doc(7), b"garbage", b"", doc(9), doc(3)])
def test_recovery_discards_other_next(tmp_path: Path, content: bytes) -> None:
    store, counter = fresh(tmp_path)
    before = store.read()
    store.next_path.write_bytes(content)
    rec = StateStore(tmp_path, counter).recover()
    assert rec.discarded_next
    assert rec.consistent
    assert store.read() == before


def test_recovery_flags_mismatch(tmp_path: Path) -> None:
    store, counter = fresh(tmp_path)
    old = store.read()
    store.commit(lambda c: doc(c, b"newer"))
    store.state_path.write_bytes(old)  # an older state restored
    again = StateStore(tmp_path, counter)
    rec = again.recover()
    assert rec.state_present
    assert not rec.consistent
    assert rec.state_counter == 6
    assert rec.tpm_counter == 7
    with pytest.raises(Tampered):
        again.commit(doc)
    store.state_path.unlink()
    rec = StateStore(tmp_path, counter).recover()
    assert not rec.state_present
    assert not rec.consistent
    store.state_path.write_bytes(b"junk")
    rec = StateStore(tmp_path, counter).recover()
    assert rec.state_present
    assert rec.state_counter is None
    assert not rec.consistent


def test_counter_moved_by_someone_else(tmp_path: Path) -> None:
    store, counter = fresh(tmp_path)
    counter.value += 1  # another program incremented the NV counter
    with pytest.raises(Tampered):
        store.commit(doc)
    rec = StateStore(tmp_path, counter).recover()
    assert not rec.consistent


def test_interrupted_increment_needs_recovery(tmp_path: Path) -> None:
    store, counter = fresh(tmp_path)
    counter.fail_next = True
    with pytest.raises(Unavailable):
        store.commit(doc)
    with pytest.raises(Unavailable):
        store.commit(doc)
    assert store.next_path.exists()
    rec = store.recover()  # the increment did not happen: state.next at c+1 is discarded
    assert rec.consistent
    assert rec.discarded_next
    assert store.commit(doc) == 7


def test_files_are_private(tmp_path: Path) -> None:
    store, _ = fresh(tmp_path)
    assert os.stat(store.state_path).st_mode & 0o077 == 0


class CachingCounter(FakeCounter):
    """Like the TPM adapter: `increment()` answers its cached value + 1, whatever the NV index holds."""

    cached: int | None = None

    def read(self) -> int:
        self.cached = self.value
        return self.value

    def increment(self) -> int:
        if self.cached is None:
            self.read()
        assert self.cached is not None
        self.value += 1
        self.cached += 1
        return self.cached


def test_counter_moved_is_seen_through_a_caching_counter(tmp_path: Path) -> None:
    """Issue 12, finding 5: the check reads the counter back; the increment's own answer may be a cache."""
    counter = CachingCounter(5)
    store = StateStore(tmp_path, counter)
    store.recover()
    store.commit(doc, first=True)
    before = store.read()
    counter.value += 1  # another program incremented the NV counter; the cache still says 6
    with pytest.raises(Tampered, match="moved"):
        store.commit(doc)
    assert store.tamper is not None  # the device reports it (health, wallet)
    assert store.state_path.read_bytes() == before
    assert not StateStore(tmp_path, counter).recover().consistent
