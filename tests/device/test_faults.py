"""The test-only fault hook: inert by default, validated, and a real SIGKILL at the named step."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from device_os.core.faults import COMMIT_STEPS, STEPS, FaultHook


def test_inert_and_validated() -> None:
    hook = FaultHook()
    assert not hook.armed
    for step in STEPS:
        hook(step)
    with pytest.raises(ValueError, match="unknown"):
        FaultHook("after-lunch")
    with pytest.raises(ValueError, match=">= 1"):
        FaultHook("after-rename@0")
    assert FaultHook("after-rename@3").armed
    assert len(set(STEPS)) == len(STEPS)
    assert COMMIT_STEPS[2] == "after-nv-increment"


def test_kills_at_the_nth_hit() -> None:
    code = (
        "from device_os.core.faults import FaultHook\n"
        "h = FaultHook('after-rename@2')\n"
        "h('after-write-next'); h('after-rename'); print('one', flush=True)\n"
        "h('after-rename'); print('two')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert proc.stdout == "one\n"
