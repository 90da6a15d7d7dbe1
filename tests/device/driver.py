"""A child process that runs the device core for the power-cut campaign and the fault tests.

    python -m tests.device.driver      (settings from COFFER_DEVICE_* env; COFFER_TEST_FAULT arms the hook)

Reads one JSON request per line on stdin, answers one JSON line on stdout *after* the operation returned
(`{"ok": true, "result": ...}` or `{"ok": false, "error": <slug>, "kind": <class>, "detail": ...}`), so a
kill before the reply is visible to the parent as a request without an answer. SIGUSR1 writes every thread's
stack to stderr (the harness sends it before killing a child that went silent). Test infrastructure only.
"""

from __future__ import annotations

import faulthandler
import hashlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from device_os.api.service import DeviceService
from device_os.api.settings import load_settings
from device_os.core.device import Device
from device_os.core.faults import FaultHook
from device_os.errors import DeviceError
from protocol.b64 import b64url_decode, b64url_encode


def _status(device: Device) -> dict[str, Any]:
    st = device.status()
    da = device.tpm.da_status()
    return {
        "phase": st.phase.value,
        "tampered": st.tampered,
        "reason": st.tamper_reason,
        "counter": st.counter,
        "device_id": st.device_id,
        "failed_tries": da.failed_tries,
        "max_tries": da.max_tries,
    }


def _inspect(device: Device) -> dict[str, Any]:
    wallet = device.wallet()
    body = wallet.body
    contents = {}
    for item_id, entry in body.library.items():
        h = hashlib.sha256()
        for chunk in wallet.open_item(item_id):
            h.update(chunk)
        contents[item_id] = h.hexdigest() == entry.sha256
    return {
        "counter": device.store.counter,
        "tpm_counter": device.tpm.counter_read(),
        "body": json.loads(body.encode()),
        "listing": device.content.listing(),
        "content_ok": contents,
        "data_listing": sorted(p.name for p in device.data_dir.iterdir()),
    }


def handle(device: Device, req: dict[str, Any]) -> Any:
    op = req["op"]
    if op == "status":
        return _status(device)
    if op == "provision":
        device.provision()
        return _status(device)
    if op == "setup":
        device.setup(req["pin"])
        return device.identity()
    if op == "unlock":
        device.unlock(req["pin"])
        return _status(device)
    if op == "change_pin":
        device.change_pin(req["old"], req["new"])
        return None
    if op == "identity":  # what GET /v1/identity publishes (the center's enrollment input)
        return DeviceService(device, software_version="test").identity().model_dump(mode="json")
    if op == "activate":  # TPM2_ActivateCredential (flow 3)
        secret = device.activate_credential(b64url_decode(req["blob"]), b64url_decode(req["secret"]))
        return b64url_encode(secret)
    if op == "enroll":
        return device.wallet().accept_enrollment(req["enrollment"], req["root_jwk"]).keyset_version
    if op == "credit":
        return device.wallet().apply_credit(req["credit"]).model_dump()
    if op == "purchase":
        path = Path(req["stream"])

        def chunks() -> Any:
            with path.open("rb") as fh:
                while chunk := fh.read(16384):
                    yield chunk

        return device.wallet().purchase(req["order"], chunks(), mode=req.get("mode", "now")).model_dump()
    if op == "receipt":
        device.wallet().apply_receipt(req["receipt"])
        return None
    if op == "inspect":
        return _inspect(device)
    if op == "sleep":  # a stand-in for a stuck device: the harness's hang detection is tested with it
        time.sleep(req["seconds"])
        return None
    raise ValueError(f"unknown op {op!r}")


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the harness asks for the stacks of a hang
    settings = load_settings(environ=os.environ)  # the harness passes COFFER_DEVICE_* in the environment
    device = Device.open(settings, faults=FaultHook(os.environ.get("COFFER_TEST_FAULT")))
    out = sys.stdout
    out.write(json.dumps({"ok": True, "result": "ready"}) + "\n")
    out.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        if req["op"] == "exit":
            break
        try:
            reply = {"ok": True, "result": handle(device, req)}
        except DeviceError as exc:
            reply = {"ok": False, "error": exc.slug, "kind": type(exc).__name__, "detail": str(exc)}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
