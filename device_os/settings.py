"""The device's settings (STYLE.md 12): one typed class, environment names `COFFER_DEVICE_*`.

Built with explicit values only (`DeviceSettings(data_dir=..., tcti=...)`: tests, benches) or by the one
loader, `device_os.api.settings.load_settings` (CLI options over the environment it is given over the
EnvironmentFile); never from the ambient environment by itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

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
    #: The center root's fingerprint baked into the image. Without it, enrollment is refused unless
    #: `trust_first_center` is set.
    pinned_root_fingerprint: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    #: Without a pinned root, pin the root of the first enrollment accepted (trust on first use): the demo and
    #: tests only (`COFFER_DEVICE_TRUST_FIRST_CENTER=1`). Ignored when a root is pinned.
    trust_first_center: bool = False

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The values passed, nothing ambient (the environment and coffer.conf come through load_settings)."""
        return (init_settings,)

    def root_pinning(self) -> RootPinning:
        """How the center root is pinned: `pinned` (configured), `trust-first` (the first enrollment's root,
        explicitly allowed) or `none` (enrollment is refused)."""
        if self.pinned_root_fingerprint is not None:
            return "pinned"
        return "trust-first" if self.trust_first_center else "none"


RootPinning = Literal["pinned", "trust-first", "none"]
