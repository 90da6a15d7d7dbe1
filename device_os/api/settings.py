"""Settings of the device service (STYLE.md 12): the core's `DeviceSettings` plus the listen address.

Sources, strongest first: command-line options, `COFFER_DEVICE_*` environment variables, a config file in
systemd EnvironmentFile syntax (`coffer.conf` on the board's boot partition), the defaults. They are
pydantic-settings sources (`ServiceSettings.settings_customise_sources`: the init values are the CLI options,
then `EnvironmentSource`, then `EnvironmentFileSource`), built by `load_settings` from the environment it is
given, so tests pass their own environment instead of mutating the process's; the ambient environment, a
`.env` file or a secrets directory are never read.

    COFFER_DEVICE_LISTEN=192.168.7.1:8470      # an IP literal and a port; never a wildcard address
    COFFER_DEVICE_DATA_DIR=/var/lib/coffer
    COFFER_DEVICE_TCTI=device:/dev/tpmrm0
    COFFER_DEVICE_AUTO_LOCK_MINUTES=15          # or COFFER_DEVICE_AUTO_LOCK_SECONDS=900; 0 disables
    COFFER_DEVICE_PINNED_ROOT_FINGERPRINT=<64 hex>   # empty or absent: enrollment refused, unless
    COFFER_DEVICE_TRUST_FIRST_CENTER=1               # (demo, tests) pins the first center's root
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from device_os.envfile import parse_environment_file
from device_os.settings import DeviceSettings
from protocol.usb import DEVICE_PORT

ENV_PREFIX = "COFFER_DEVICE_"
DEFAULT_PORT = DEVICE_PORT


class ServiceSettings(DeviceSettings):
    """`DeviceSettings` + where the HTTP service listens. Built by `load_settings`, never from ambient env."""

    #: `HOST:PORT` with HOST an IPv4 literal or a bracketed IPv6 literal (`[fe80::1]:8470`).
    listen: str = f"127.0.0.1:{DEFAULT_PORT}"
    #: Convenience: minutes instead of `auto_lock_seconds` (DESIGN.md: 15); wins when set.
    auto_lock_minutes: int | None = Field(default=None, ge=0)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Strongest first: the init values (the CLI options), then, inside `load_settings`, the environment
        and the EnvironmentFile it was given. Built directly (`ServiceSettings(...)`): init values only."""
        given = _GIVEN.get()
        if given is None:
            return (init_settings,)
        environ, config_file = given
        sources: list[PydanticBaseSettingsSource] = [init_settings, EnvironmentSource(settings_cls, environ)]
        if config_file is not None:
            sources.append(EnvironmentFileSource(settings_cls, config_file))
        return tuple(sources)

    @model_validator(mode="before")
    @classmethod
    def _minutes(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("auto_lock_minutes") not in (None, ""):
            data = {**data, "auto_lock_seconds": int(data["auto_lock_minutes"]) * 60}
        return data

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    def address(self) -> tuple[str, int]:
        """(host, port) to bind: host without brackets."""
        return parse_listen(self.listen)

    def allowed_hosts(self) -> frozenset[str]:
        """The `Host` header values accepted (lowercase): the address with and without the port."""
        host, port = self.address()
        shown = f"[{host}]" if ":" in host else host
        return frozenset({shown.lower(), f"{shown}:{port}".lower()})


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT` -> (host, port). HOST must be an IP literal and not a wildcard (0.0.0.0, ::)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError("listen must be HOST:PORT with a port from 1 to 65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("an IPv6 listen address must be bracketed: [ADDR]:PORT")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError("listen HOST must be an IP address literal") from None
    if address.is_unspecified:
        raise ValueError("the service listens on one address only; a wildcard address is refused")
    return host, int(port_text)


class EnvironmentSource(PydanticBaseSettingsSource):
    """`COFFER_DEVICE_*` variables of an environment (a mapping: `os.environ` for the CLI, a dict in tests) as
    field values: prefix dropped, lowercase; an empty value counts as unset; `COFFER_DEVICE_CONFIG` names the
    file and is no setting."""

    def __init__(self, settings_cls: type[BaseSettings], variables: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._values = _prefixed(variables)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


class EnvironmentFileSource(EnvironmentSource):
    """A config file in systemd EnvironmentFile syntax (`parse_environment_file`), read once when the settings
    are built: the same variables as the environment, weaker than it."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        super().__init__(settings_cls, parse_environment_file(path.read_text(encoding="utf-8")))


#: What `load_settings` was given (environment, config file) while it builds a ServiceSettings.
_GIVEN: ContextVar[tuple[Mapping[str, str], Path | None] | None] = ContextVar("device_settings", default=None)


@contextmanager
def _given(environ: Mapping[str, str], config_file: Path | None) -> Iterator[None]:
    token = _GIVEN.set((environ, config_file))
    try:
        yield
    finally:
        _GIVEN.reset(token)


def _prefixed(source: Mapping[str, str]) -> dict[str, str]:
    return {
        key[len(ENV_PREFIX) :].lower(): value
        for key, value in source.items()
        if key.startswith(ENV_PREFIX) and key != ENV_PREFIX + "CONFIG" and value != ""
    }


def load_settings(
    *,
    environ: Mapping[str, str],
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ServiceSettings:
    """The settings from `overrides` (the CLI options; None = not given) over `environ`'s `COFFER_DEVICE_*`
    variables over the config file over the defaults (pydantic-settings merges the sources).

    `config_file` defaults to `$COFFER_DEVICE_CONFIG` when that is set.
    """
    if config_file is None and environ.get(ENV_PREFIX + "CONFIG"):
        config_file = Path(environ[ENV_PREFIX + "CONFIG"])
    options = {k: v for k, v in (overrides or {}).items() if v is not None}
    with _given(environ, config_file):
        return ServiceSettings(**options)
