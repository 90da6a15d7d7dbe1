"""Arming the device's TEST-ONLY fault hook (device_os.core.faults) in a child process."""

from __future__ import annotations

import os
from pathlib import Path

FAULTSITE = Path(__file__).resolve().parent / "faultsite"
REPO = Path(__file__).resolve().parents[2]


def fault_env(spec: str) -> dict[str, str]:
    """Environment for a `python -m device_os ...` child that SIGKILLs itself at `spec` (`STEP` or `STEP@N`):
    tests/support/faultsite/sitecustomize.py reads `COFFER_TEST_FAULT` at the child's start-up."""
    return {"PYTHONPATH": f"{FAULTSITE}{os.pathsep}{REPO}", "COFFER_TEST_FAULT": spec}
