"""The center's one settings class (STYLE.md item 12): `COFFER_CENTER_*` environment variables or
arguments."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from center.errors import ConfigError

#: Secrets that are placeholders from templates and examples, refused wherever they appear.
PLACEHOLDER_SECRETS = frozenset(
    {"changethis", "changeme", "change-me", "placeholder", "secret", "password", "xxx"}
)
DEFAULT_LISTEN = "127.0.0.1:8440"


def split_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::1]:PORT`) → (host, port)."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"--listen must be HOST:PORT, not {listen!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class CenterSettings(BaseSettings):
    """Everything the center reads at start. Tests build their own instance; nothing global."""

    model_config = SettingsConfigDict(env_prefix="COFFER_CENTER_", extra="forbid", frozen=True)

    data_dir: Path = Field(description="Keys, the SQLite database and the local blob folder live here")
    database_url: SecretStr | None = Field(
        default=None, description="SQLAlchemy URL; default sqlite:///DATA_DIR/center.db (WAL)"
    )
    listen: str = DEFAULT_LISTEN
    tls_cert: Path | None = None
    tls_key: Path | None = None
    issuer: str | None = Field(default=None, description="The center's URL, `iss` of what it signs")
    storefront_page_size: int = Field(default=50, ge=1, le=100)
    sqlite_synchronous: Literal["full", "normal"] = Field(
        default="full",
        description="SQLite's synchronous pragma (WAL mode): full fsyncs every commit, so a receipt or order "
        "handed out survives a power loss; normal survives application crashes but a power loss may undo "
        "the last commits (docs/center-commerce.md, Durability)",
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Server processes sharing the listening socket (`center serve --workers N`; "
        "docs/center-commerce.md, Workers)",
    )
    # commerce (issue 11)
    ek_ca: Annotated[tuple[Path, ...], NoDecode] = Field(
        default=(),
        description="PEM files of trusted EK CA certificates (roots and intermediates); the environment "
        "variable takes several paths separated by ':'",
    )
    allow_unattested: bool = Field(
        default=False, description="Tests and the demo only: skip the EK chain check (never Certify)"
    )
    welcome_credit: int = Field(default=0, ge=0, le=2**53 - 1, description="Welcome credit; 0 disables it")
    welcome_currency: str = Field(default="JPY", pattern=r"^[A-Z]{3}$")
    max_unpaid: int = Field(default=2, ge=0, le=1000, description="Unpaid deliveries before orders stop")
    order_ttl: int = Field(default=86400, ge=60, le=366 * 86400, description="Seconds an order stays valid")
    challenge_ttl: int = Field(default=300, ge=10, le=3600, description="Seconds to answer a MakeCredential")

    @field_validator("ek_ca", mode="before")
    @classmethod
    def _split_paths(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(Path(p) for p in value.split(":") if p)
        return value

    @field_validator("database_url")
    @classmethod
    def _no_placeholder_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            password = urlsplit(value.get_secret_value()).password
            if password is not None and password.lower() in PLACEHOLDER_SECRETS:
                raise ValueError("the database password is a placeholder; set a real one")
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> CenterSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def blobs_dir(self) -> Path:
        return self.data_dir / "blobs"

    def prepare_data_dir(self) -> None:
        """Create the data directory (0700) if needed."""
        try:
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the data directory {self.data_dir}: {exc.strerror}") from exc

    def sqlalchemy_url(self) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{(self.data_dir / 'center.db').resolve()}"

    def issuer_url(self) -> str:
        if self.issuer:
            return self.issuer.rstrip("/")
        host, port = split_listen(self.listen)
        shown = f"[{host}]" if ":" in host else host
        return f"{'https' if self.tls else 'http'}://{shown}:{port}"

    def check_serving(self) -> tuple[str, int]:
        """Where to listen; refuses plain HTTP on anything but loopback (DESIGN.md threat model)."""
        host, port = split_listen(self.listen)
        if not self.tls and not is_loopback(host):
            raise ConfigError(
                f"refusing plain HTTP on {host}: give --tls-cert and --tls-key, or listen on loopback"
            )
        for path in (self.tls_cert, self.tls_key):
            if path is not None and not path.is_file():
                raise ConfigError(f"TLS file not found: {path}")
        return host, port
