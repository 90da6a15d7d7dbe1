"""TEST-ONLY: arms the device's fault hook in a child process (`python -m device_os serve` started by a test).

Python imports `sitecustomize` at start-up from the path; a test that wants a power cut at a named step starts
the child with this directory first on PYTHONPATH and `COFFER_TEST_FAULT=STEP[@N]` (see `fault_env`). The
product itself never reads that variable: nothing in a device's settings or coffer.conf can arm the hook.
"""

from __future__ import annotations

import os

_spec = os.environ.get("COFFER_TEST_FAULT")
if _spec:
    from device_os.core import faults

    faults.install(faults.FaultHook(_spec))
