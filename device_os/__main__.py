"""`device_os` command line: one parser, one way to load settings, for every command.

    device_os provision [--config F] [--data DIR] [--tcti TCTI]      # flow 1, idempotent; status as JSON
    device_os status    [--config F] [--data DIR] [--tcti TCTI]      # start-up recovery; status as JSON
    device_os serve     [--config F] [--data DIR] [--tcti TCTI] [--listen HOST:PORT]   # the HTTP API

Settings, strongest first (`device_os.api.settings.load_settings`): these options, `COFFER_DEVICE_*`
environment variables, the config file (`--config`, else `$COFFER_DEVICE_CONFIG`; systemd EnvironmentFile
syntax, the board's `coffer.conf`), the defaults. Exit codes: 0 ok, 2 usage or bad settings (one line on
stderr naming the setting, never its value), 1 TPM or device error (printed to stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from device_os.api.settings import ServiceSettings, load_settings
from device_os.core.device import Device
from device_os.envfile import ConfigFileError
from device_os.errors import DeviceError
from device_os.tpm import TpmError


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="EnvironmentFile with COFFER_DEVICE_* settings")
    common.add_argument("--data", type=Path, help="data directory (COFFER_DEVICE_DATA_DIR)")
    common.add_argument("--tcti", help="TPM TCTI (COFFER_DEVICE_TCTI; default device:/dev/tpmrm0)")
    parser = argparse.ArgumentParser(prog="device_os", description="Coffer device")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("provision", parents=[common], help="first boot: provision the TPM (idempotent)")
    sub.add_parser("status", parents=[common], help="run start-up recovery and show the status")
    serve = sub.add_parser("serve", parents=[common], help="serve the device API")
    serve.add_argument("--listen", help="HOST:PORT to listen on (COFFER_DEVICE_LISTEN)")
    return parser


def _settings(args: argparse.Namespace) -> ServiceSettings:
    overrides = {"data_dir": args.data, "tcti": args.tcti, "listen": getattr(args, "listen", None)}
    return load_settings(environ=os.environ, config_file=args.config, overrides=overrides)


def _settings_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):  # names and messages only, never the values
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
    return str(exc)


def _status(settings: ServiceSettings, *, provision: bool) -> int:
    try:
        device = Device.open(settings)
        try:
            if provision:
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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = _settings(args)
    except (ValidationError, ConfigFileError, OSError) as exc:
        print(f"device_os {args.command}: bad settings: {_settings_error(exc)}", file=sys.stderr)
        return 2
    if args.command == "serve":
        from device_os.serve import run  # uvicorn and the API load only for the service

        return run(settings)
    return _status(settings, provision=args.command == "provision")


if __name__ == "__main__":
    sys.exit(main())
