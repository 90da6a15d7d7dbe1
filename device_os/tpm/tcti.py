"""A counting TCTI: wraps the real TCTI (swtpm, device, …) and counts every TPM command on the wire.

Counting here, below ESAPI, sees exactly what the TPM sees (and what tpm2-tools would see through the same
transport): one `transmit` per TPM command, whatever the Python API did to produce it. The command code of
each command (bytes 6..10 of its header, TPM 2.0 Part 1 §18.2) is kept in a short ring for diagnostics.

When the TPM answers TPM_RC_RETRY, TPM_RC_YIELDED or TPM_RC_TESTING, ESAPI sends the very same command again.
That resubmission is counted apart (`retries`): on the wire there were `count + retries` transmissions.
libtpms answers TPM_RC_RETRY to the first authorization of a DA-protected object after each TPM start (it
must first record in NV that an unorderly shutdown would now count as a DA failure).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

from tpm2_pytss.constants import TPM2_CC
from tpm2_pytss.TCTI import TCTI, PyTCTI
from tpm2_pytss.TCTILdr import TCTILdr

# TPM 2.0 Part 2 §6.5 TPM_CC: command code -> name, for diagnostics and tests.
COMMAND_NAMES: dict[int, str] = {
    int(value): name
    for name in dir(TPM2_CC)
    if not name.startswith("_")
    and isinstance(value := getattr(TPM2_CC, name), int)
    and name not in ("FIRST", "LAST")
}

_MAX_RESPONSE = 4096
_RESUBMIT_CODES = {0x922, 0x908, 0x90A}  # TPM_RC_RETRY, TPM_RC_YIELDED, TPM_RC_TESTING


def command_name(code: int) -> str:
    return COMMAND_NAMES.get(code, f"0x{code:08x}")


Tap = Callable[[bytes], None]


class CountingTcti(PyTCTI):  # type: ignore[misc]
    """A PyTCTI that forwards to `inner` and counts commands. Thread-safe counters; one user at a time.

    `tap`, when given, sees every command buffer as sent on the wire (tests: what crosses the bus in clear).
    """

    def __init__(self, inner: TCTI, *, ring: int = 64, tap: Tap | None = None) -> None:
        super().__init__(max_size=_MAX_RESPONSE, magic=b"CFRCOUNT")
        self._inner = inner
        self._tap = tap
        self._lock = threading.Lock()
        self._count = 0
        self._retries = 0
        self._last_command = b""
        self._last_code = 0
        self._resubmit_expected = False
        self._recent: collections.deque[int] = collections.deque(maxlen=ring)
        self._times: collections.deque[tuple[int, float]] = collections.deque(maxlen=4096)
        self._sent_at = 0.0

    @classmethod
    def parse(
        cls, tcti: str, *, previous: CountingTcti | None = None, tap: Tap | None = None
    ) -> CountingTcti:
        """Load the TCTI named by a tpm2-tools style string (`swtpm:host=…,port=…`, `device:/dev/tpmrm0`).
        With `previous` (a reconnect), counting continues from it."""
        counting = cls(TCTILdr.parse(tcti), tap=tap)
        if previous is not None:
            with previous._lock:
                counting._count = previous._count
                counting._retries = previous._retries
                counting._recent.extend(previous._recent)
        return counting

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    @property
    def retries(self) -> int:
        """Resubmissions of the previous command after TPM_RC_RETRY/YIELDED/TESTING."""
        with self._lock:
            return self._retries

    def command_times(self, *, clear: bool = False) -> list[tuple[str, float]]:
        """(command name, seconds from transmit to the end of receive) for recent commands (up to 4096)."""
        with self._lock:
            times = [(command_name(code), seconds) for code, seconds in self._times]
            if clear:
                self._times.clear()
            return times

    def recent(self) -> list[str]:
        """Names of the most recent commands, oldest first."""
        with self._lock:
            return [command_name(code) for code in self._recent]

    def do_transmit(self, command: bytes) -> None:
        code = int.from_bytes(command[6:10], "big") if len(command) >= 10 else 0
        with self._lock:
            if self._resubmit_expected and command == self._last_command:
                self._retries += 1
            else:
                self._count += 1
                self._recent.append(code)
            self._resubmit_expected = False
            self._last_command = command
            self._last_code = code
            self._sent_at = time.perf_counter()
        if self._tap is not None:
            self._tap(bytes(command))
        self._inner.transmit(command)

    def do_receive(self, timeout: int) -> bytes:
        response: bytes = self._inner.receive(_MAX_RESPONSE, timeout)
        rc = int.from_bytes(response[6:10], "big") if len(response) >= 10 else 0
        with self._lock:
            self._resubmit_expected = rc in _RESUBMIT_CODES
            self._times.append((self._last_code, time.perf_counter() - self._sent_at))
        return response

    def do_cancel(self) -> None:
        self._inner.cancel()

    def do_set_locality(self, locality: int) -> None:
        self._inner.set_locality(locality)

    def do_finalize(self) -> None:
        if isinstance(self._inner, TCTILdr):
            self._inner.close()
        else:
            self._inner.finalize()
