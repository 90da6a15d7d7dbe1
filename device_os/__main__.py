"""`device_os` command line: first-boot provisioning and a status probe (the HTTP service comes later).

    device_os provision --data DIR --tcti TCTI    # flow 1, idempotent; prints the status as JSON
    device_os status    --data DIR --tcti TCTI    # runs start-up recovery, prints the status as JSON
    device_os serve     [--config F] [--data DIR] [--tcti TCTI] [--listen HOST:PORT]  # the HTTP API

Options default to COFFER_DEVICE_DATA_DIR / COFFER_DEVICE_TCTI. Exit codes: 0 ok, 2 usage, 1 TPM or device
error (printed to stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from device_os.core.device import Device
from device_os.errors import DeviceError
from device_os.settings import DeviceSettings
from device_os.tpm import TpmError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="device_os", description="Coffer device core")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("provision", "first boot: provision the TPM (idempotent)"),
        ("status", "show status"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--data", type=Path, default=os.environ.get("COFFER_DEVICE_DATA_DIR"))
        cmd.add_argument("--tcti", default=os.environ.get("COFFER_DEVICE_TCTI", "device:/dev/tpmrm0"))
    sub.add_parser("serve", help="serve the device API (options: device_os serve --help)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    if given[:1] == ["serve"]:  # the HTTP service parses its own options (device_os/serve.py)
        from device_os.serve import main as serve_main

        return serve_main(given[1:])
    args = _parser().parse_args(argv)
    if args.data is None:
        print("device_os: --data DIR (or COFFER_DEVICE_DATA_DIR) is required", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = DeviceSettings(data_dir=args.data, tcti=args.tcti)
    try:
        device = Device.open(settings)
        try:
            if args.command == "provision":
                device.provision()
            status = device.status()
            counter = device.tpm.counter_read() if status.device_id is not None else None
            da = device.tpm.da_status()
        finally:
            device.close()
    except (DeviceError, TpmError) as exc:
        print(f"device_os: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    out = status.model_dump(mode="json")
    out["tpm_counter"] = counter
    out["failed_tries"] = da.failed_tries
    out["max_tries"] = da.max_tries
    print(json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
