"""The root conftest's report repair: a failure raised by a signal handler is reported, not an INTERNALERROR.

On CPython 3.11 the back jump of a `for` loop whose body ends in an `if` has no line number (cpython
gh-107901); an exception a signal handler raises there (as pytest-timeout's `Failed: Timeout` does) has a
traceback entry with `tb_lineno` None, and pytest's report of it fails with INTERNALERROR. A child pytest runs
such a test with the root conftest as its only conftest and must report the real exception.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTEST = (sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-q")

INTERRUPTED_LOOP = """
import signal


def _alarm(signum, frame):
    raise TimeoutError("the alarm went off in the loop")


def test_interrupted_loop():
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    for i in range(10**12):
        if not i % 1000:
            pass
"""


def test_an_exception_from_a_signal_handler_in_a_loop_is_reported(tmp_path: Path) -> None:
    (tmp_path / "test_loop.py").write_text(INTERRUPTED_LOOP)
    result = subprocess.run(
        [*PYTEST, "--rootdir", str(tmp_path), "test_loop.py"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert "INTERNALERROR" not in output, output[-4000:]
    assert result.returncode == 1, output[-4000:]  # one test failed
    assert "E       TimeoutError: the alarm went off in the loop" in result.stdout
    assert "test_loop.py:14: " in result.stdout  # the loop's entry points at its last line
