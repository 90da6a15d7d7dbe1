"""What the device sends the TPM in clear, read at the TCTI seam (`Tpm.open(tap=...)`), where a probe on the
board's SPI bus would read it (issue 12 #6: secrets travel only in the salted, parameter-encrypted session).
Through a whole PIN life cycle of the device core (setup, unlock, a wrong PIN, a PIN change, unlock with the
new PIN), neither PIN nor the DEK appears in any command buffer."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_os.core.device import Device
from device_os.errors import WrongPin
from device_os.settings import DeviceSettings
from device_os.tpm import Tpm
from tests.device.conftest import PIN
from tests.support.swtpm import SwtpmInstance

pytestmark = pytest.mark.swtpm
NEW_PIN = "97531086"


def test_no_pin_or_dek_crosses_the_bus_in_clear(swtpm: SwtpmInstance, tmp_path: Path) -> None:
    sent: list[bytes] = []
    settings = DeviceSettings(data_dir=tmp_path / "data", tcti=swtpm.tcti, trust_first_center=True)
    device = Device(settings, Tpm.open(settings.tcti, tap=sent.append))
    try:
        device.provision()
        device.setup(PIN)
        device.unlock(PIN)
        session = device._session
        assert session is not None
        dek = session.dek
        device.lock()
        with pytest.raises(WrongPin):
            device.unlock("000000")  # judged by the TPM (locked): an HMAC, not the PIN
        device.unlock(PIN)
        device.change_pin(PIN, NEW_PIN)
        device.lock()
        device.unlock(NEW_PIN)
    finally:
        device.close()
    assert len(sent) > 20  # the tap saw the life cycle
    for secret in (PIN.encode(), NEW_PIN.encode(), dek):
        assert not [command for command in sent if secret in command]
