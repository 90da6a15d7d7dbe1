"""The key directory's crash-safe swaps (setup.next/, pin.next/, keys.old/) at the file level."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from device_os.core.keys import KeyDirectory, KeyFiles

OLD = KeyFiles(b"old-dek", b"old-pay", b"{}", b"old-kem")
NEW = KeyFiles(b"new-dek", b"new-pay", b"{}", b"new-kem")


def test_setup_next_needs_a_committed_state(tmp_path: Path) -> None:
    kd = KeyDirectory(tmp_path)
    kd.write_setup_next(OLD)
    assert kd.recover(state_committed=False) == ["setup.next discarded"]
    assert not kd.present()
    kd.write_setup_next(OLD)
    assert kd.recover(state_committed=True) == ["setup.next finished"]
    assert kd.load() == OLD
    assert os.stat(kd.keys).st_mode & 0o077 == 0


@pytest.mark.parametrize("stage", ["files", "marker", "moved-old", "moved-new", "done"])
def test_pin_next_every_stage(tmp_path: Path, stage: str) -> None:
    kd = KeyDirectory(tmp_path)
    kd.write_setup_next(OLD)
    kd.finish_setup()
    kd.write_pin_next(NEW)
    if stage == "files":
        (kd.pin_next / "complete").unlink()
    elif stage == "moved-old":
        os.rename(kd.keys, kd.keys_old)
    elif stage == "moved-new":
        os.rename(kd.keys, kd.keys_old)
        os.rename(kd.pin_next, kd.keys)
    elif stage == "done":
        kd.swap_pin_next()
    kd.recover(state_committed=True)
    assert kd.load() == (OLD if stage == "files" else NEW)
    assert not kd.pin_next.exists()
    assert not kd.keys_old.exists()
    assert kd.recover(state_committed=True) == []  # idempotent


def test_keys_old_alone_is_restored(tmp_path: Path) -> None:
    kd = KeyDirectory(tmp_path)
    kd.write_setup_next(OLD)
    kd.finish_setup()
    os.rename(kd.keys, kd.keys_old)
    assert kd.recover(state_committed=True) == ["keys.old restored"]
    assert kd.load() == OLD
