"""Coffer device_os: the software of the USB board that holds the buyer's keys and wallet (DESIGN.md).

    device_os.tpm      the TPM adapter (the only importer of tpm2_pytss)
    device_os.core     the device core: state, commits, recovery, content store, wallet, setup/unlock/PIN
    device_os.errors   the error tree the HTTP layer maps to problem types
    device_os.settings the typed settings (COFFER_DEVICE_*)

Entry for the HTTP layer: `Device.open(DeviceSettings(...))` (device_os.core.device).
"""
