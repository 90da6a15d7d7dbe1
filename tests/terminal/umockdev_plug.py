"""Plug a recorded board in while a command waits for it (umockdev's Python API; run by Debian's python3).

    umockdev-wrapper /usr/bin/python3 tests/terminal/umockdev_plug.py DESCRIPTION SYSPATH -- COMMAND...

Creates an empty umockdev testbed, starts COMMAND under umockdev-wrapper (so its libudev, and pyudev above it,
see the testbed), waits for COMMAND's first line on stderr (it is listening), then adds DESCRIPTION's devices
and emits the `add` uevent of SYSPATH, the way the kernel announces a plugged-in gadget. Relays COMMAND's
stdout and stderr and exits with its code. Itself runs under umockdev-wrapper: libudev only accepts paths
under /sys, which the preload maps into the testbed.
"""

import subprocess
import sys

import gi

gi.require_version("UMockdev", "1.0")
from gi.repository import UMockdev  # noqa: E402

description, syspath, separator, *command = sys.argv[1:]
assert separator == "--", __doc__
testbed = UMockdev.Testbed.new()
process = subprocess.Popen(
    ["umockdev-wrapper", *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
)
first = process.stderr.readline()
with open(description, encoding="utf-8") as fh:
    assert testbed.add_from_string(fh.read())
testbed.uevent(syspath, "add")
out, err = process.communicate(timeout=120)
sys.stdout.write(out)
sys.stderr.write(first + err)
sys.exit(process.returncode)
