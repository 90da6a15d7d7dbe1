"""Where terminal_cli finds its settings and keeps its files (platformdirs: XDG on Linux, also macOS/Windows).

Settings, strongest first: the global options `--center URL` / `--device URL`, the environment
(`COFFER_CENTER`, `COFFER_DEVICE`, `COFFER_CENTER_CA`), the config file `<config dir>/terminal.toml`
(`center = "https://…"`, `device = "http://…"`, `center_ca = "/path/ca.pem"`), then defaults (no center;
the device found by USB discovery).

Files:
- `<runtime dir>/device-<device_id>.token`: the device's bearer token while unlocked (0600, in a 0700
  directory that lives in RAM on Linux: `$XDG_RUNTIME_DIR`); removed by `device lock`.
- `<state dir>/centers/<host_port>/device-<device_id>.token`: the center's per-device order token from
  enrollment (0600).
- `<state dir>/purchases/…`: the purchase journal (terminal_cli/journal.py).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import tomllib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import platformdirs

from terminal_cli.errors import UsageError

APP = "coffer"
CONFIG_NAME = "terminal.toml"
_KEYS = {"center", "device", "center_ca"}


@dataclass(frozen=True)
class Paths:
    config_dir: Path
    state_dir: Path
    runtime_dir: Path

    @classmethod
    def from_platform(cls) -> Paths:
        dirs = platformdirs.PlatformDirs(APP, appauthor=False)
        with warnings.catch_warnings():  # no XDG_RUNTIME_DIR (a root shell): platformdirs falls back to /tmp
            warnings.simplefilter("ignore")
            runtime = Path(dirs.user_runtime_dir)
        return cls(Path(dirs.user_config_dir), Path(dirs.user_state_dir), runtime)

    @property
    def config_file(self) -> Path:
        return self.config_dir / CONFIG_NAME


@dataclass(frozen=True)
class Settings:
    center: str | None
    device: str | None
    center_ca: str | None
    paths: Paths


def _read_config(path: Path) -> dict[str, str]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"config file {path}: {exc}") from exc
    unknown = set(data) - _KEYS
    if unknown:
        raise UsageError(f"config file {path}: unknown setting(s) {', '.join(sorted(unknown))}")
    for key, value in data.items():
        if not isinstance(value, str):
            raise UsageError(f"config file {path}: {key} must be a string")
    return {k: str(v) for k, v in data.items()}


def load_settings(
    paths: Paths, *, center: str | None, device: str | None, environ: Mapping[str, str] | None = None
) -> Settings:
    env = os.environ if environ is None else environ
    file = _read_config(paths.config_file)

    def pick(option: str | None, env_name: str, key: str) -> str | None:
        return option or env.get(env_name) or file.get(key) or None

    return Settings(
        center=pick(center, "COFFER_CENTER", "center"),
        device=pick(device, "COFFER_DEVICE", "device"),
        center_ca=pick(None, "COFFER_CENTER_CA", "center_ca"),
        paths=paths,
    )


# -- secret files ----------------------------------------------------------------------------------------
def _private_dir(path: Path) -> Path:
    """`path`, created 0700; refused if another user owns it or others may enter it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise UsageError(f"{path} must be a directory of your own with mode 0700")
    return path


def write_private(path: Path, text: str, *, durable: bool = False) -> None:
    """Write `text` to `path` with mode 0600, atomically (a temp file in the same 0700 directory, fsynced,
    then renamed over). `durable`: the directory is fsynced too, so the new name survives a power cut."""
    directory = _private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def read_secret(path: Path) -> str | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise UsageError(f"{path} must be yours with mode 0600; remove it and try again")
    return path.read_text(encoding="ascii").strip() or None


def drop_secret(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def device_token_path(paths: Paths, device_id: str) -> Path:
    return paths.runtime_dir / f"device-{device_id}.token"


def center_token_path(paths: Paths, center: str, device_id: str) -> Path:
    parts = urlsplit(center)
    origin = f"{parts.scheme}_{parts.hostname}_{parts.port or ''}".replace(":", "_")
    return paths.state_dir / "centers" / origin / f"device-{device_id}.token"
