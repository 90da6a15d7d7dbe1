"""The device's settings (STYLE.md 12): one typed class, environment names `COFFER_DEVICE_*`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from device_os.core.aead import AeadChoice


class DeviceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COFFER_DEVICE_", extra="ignore", frozen=True)

    #: The data partition (`/var/lib/coffer` on the board): state, keys, content.
    data_dir: Path
    #: TCTI of the TPM: `device:/dev/tpmrm0` on the board, `swtpm:host=127.0.0.1,port=P` elsewhere.
    tcti: str = "device:/dev/tpmrm0"
    #: AEAD of state and content at rest; `auto` = ChaCha20-Poly1305 without the CPU's `aes` flag.
    #: Fixed at setup (recorded in identity.json).
    aead: AeadChoice = "auto"
    #: Lock after this many idle seconds (DESIGN.md: 15 minutes); 0 disables auto-lock.
    auto_lock_seconds: int = Field(default=900, ge=0)
    #: The center root's fingerprint baked into the image; None = pin on first use (the demo).
    pinned_root_fingerprint: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    #: TEST-ONLY fault hook (device_os.core.faults): `STEP` or `STEP@N` SIGKILLs the process there.
    fault: str | None = None
