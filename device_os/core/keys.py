"""The key directory and its crash-safe swaps (DESIGN.md flow 2).

    keys/          the committed set: dek.sealed (DEK sealed under the PIN), payment.key and kem.key
                   (PIN-bound TPM key blobs), identity.json (public certify evidence)
    setup.next/    setup builds the set here; swapped in (renamed to keys/) after the first state commit
    pin.next/      a PIN change builds the new set here, then writes `complete`; swapped in by
                   keys/ -> keys.old/, pin.next/ -> keys/, delete keys.old/

Start-up (after the state's header recovery): an unfinished `setup.next/` without a committed state is
discarded; with one it is swapped in. A complete `pin.next/` is finished, an incomplete one discarded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from device_os.core import fsio
from device_os.core.faults import NO_FAULTS, FaultHook

KEYS = "keys"
SETUP_NEXT = "setup.next"
PIN_NEXT = "pin.next"
KEYS_OLD = "keys.old"
SEALED_DEK = "dek.sealed"
PAYMENT_KEY = "payment.key"
KEM_KEY = "kem.key"
IDENTITY = "identity.json"
COMPLETE = "complete"
FILES = (SEALED_DEK, PAYMENT_KEY, IDENTITY, KEM_KEY)


@dataclass(frozen=True)
class KeyFiles:
    sealed_dek: bytes
    payment_key: bytes
    identity: bytes
    kem_key: bytes


class KeyDirectory:
    def __init__(self, data_dir: Path, faults: FaultHook = NO_FAULTS) -> None:
        self.data_dir = data_dir
        self.keys = data_dir / KEYS
        self.setup_next = data_dir / SETUP_NEXT
        self.pin_next = data_dir / PIN_NEXT
        self.keys_old = data_dir / KEYS_OLD
        self._faults = faults

    def present(self) -> bool:
        """A sealed DEK exists (the device has been set up)."""
        return (self.keys / SEALED_DEK).is_file()

    def load(self) -> KeyFiles:
        return KeyFiles(*((self.keys / name).read_bytes() for name in FILES))

    def _write_set(self, directory: Path, files: KeyFiles) -> None:
        fsio.remove_tree(directory)
        try:
            with fsio.full_disk_refused():
                directory.mkdir(mode=0o700)
                contents = (files.sealed_dek, files.payment_key, files.identity, files.kem_key)
                for name, data in zip(FILES, contents, strict=True):
                    fsio.write_file(directory / name, data)
                fsio.fsync_dir(directory)
                fsio.fsync_dir(self.data_dir)
        except BaseException:
            fsio.remove_tree(directory)
            raise

    # -- setup --------------------------------------------------------------------------------------------
    def write_setup_next(self, files: KeyFiles) -> None:
        self._write_set(self.setup_next, files)
        self._faults("setup-after-files")

    def finish_setup(self) -> None:
        os.rename(self.setup_next, self.keys)
        fsio.fsync_dir(self.data_dir)

    # -- PIN change ---------------------------------------------------------------------------------------
    def write_pin_next(self, files: KeyFiles) -> None:
        self._write_set(self.pin_next, files)
        self._faults("pin-after-files")
        fsio.write_file(self.pin_next / COMPLETE, b"1\n")
        fsio.fsync_dir(self.pin_next)
        self._faults("pin-after-marker")

    def swap_pin_next(self) -> None:
        os.rename(self.keys, self.keys_old)
        fsio.fsync_dir(self.data_dir)
        self._faults("pin-after-move-old")
        os.rename(self.pin_next, self.keys)
        fsio.fsync_dir(self.data_dir)
        self._faults("pin-after-move-new")
        fsio.remove_tree(self.keys_old)

    # -- start-up -----------------------------------------------------------------------------------------
    def recover(self, *, state_committed: bool) -> list[str]:
        """Finish or discard interrupted setups and PIN changes; returns what was done (for the log)."""
        done: list[str] = []
        if self.setup_next.exists():
            if state_committed and not self.keys.exists() and not self.keys_old.exists():
                self.finish_setup()
                done.append("setup.next finished")
            else:
                fsio.remove_tree(self.setup_next)
                done.append("setup.next discarded")
        if self.pin_next.exists():
            if not (self.pin_next / COMPLETE).is_file():
                fsio.remove_tree(self.pin_next)
                done.append("pin.next discarded (incomplete)")
            elif self.keys.exists() and not self.keys_old.exists():
                self.swap_pin_next()
                done.append("pin.next finished")
            elif not self.keys.exists() and self.keys_old.exists():
                os.rename(self.pin_next, self.keys)
                fsio.fsync_dir(self.data_dir)
                fsio.remove_tree(self.keys_old)
                done.append("pin.next finished")
            else:
                fsio.remove_tree(self.pin_next)
                done.append("pin.next discarded (inconsistent)")
        if self.keys_old.exists():
            if self.keys.exists():
                fsio.remove_tree(self.keys_old)
                done.append("keys.old removed")
            else:
                os.rename(self.keys_old, self.keys)
                fsio.fsync_dir(self.data_dir)
                done.append("keys.old restored")
        return done
