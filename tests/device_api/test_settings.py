"""Service settings (unit tier): EnvironmentFile syntax, precedence, the listen address."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from device_os import gadget
from device_os.api.settings import (
    EnvironmentFileSource,
    EnvironmentSource,
    ServiceSettings,
    load_settings,
    parse_listen,
)
from device_os.core import faults
from device_os.envfile import ConfigFileError, parse_environment_file
from device_os.settings import DeviceSettings

FP = "ab" * 32


def test_environment_file_syntax() -> None:
    text = (
        "# coffer.conf\n"
        "; another comment\n"
        "\n"
        "COFFER_DEVICE_LISTEN=192.168.7.1:8470\n"
        '  COFFER_DEVICE_TCTI="swtpm:host=127.0.0.1,port=2321"\n'
        "COFFER_DEVICE_DATA_DIR='/var/lib/coffer'\n"
        "COFFER_DEVICE_SUBNET=192.168.7.0/30\n"
        'QUOTED="a \\"b\\" c"\n'
        "LONG=one\\\n"
        "two\n"
    )
    values = parse_environment_file(text)
    assert values == {
        "COFFER_DEVICE_LISTEN": "192.168.7.1:8470",
        "COFFER_DEVICE_TCTI": "swtpm:host=127.0.0.1,port=2321",
        "COFFER_DEVICE_DATA_DIR": "/var/lib/coffer",
        "COFFER_DEVICE_SUBNET": "192.168.7.0/30",
        "QUOTED": 'a "b" c',
        "LONG": "onetwo",
    }
    for bad in ("no equals sign\n", "1BAD=x\n", 'K="unterminated\n'):
        with pytest.raises(ConfigFileError):
            parse_environment_file(bad)


def test_precedence_cli_over_env_over_file(tmp_path: Path) -> None:
    conf = tmp_path / "coffer.conf"
    conf.write_text(
        "COFFER_DEVICE_LISTEN=10.0.0.1:1000\nCOFFER_DEVICE_DATA_DIR=/from/file\n"
        f"COFFER_DEVICE_PINNED_ROOT_FINGERPRINT={FP}\nCOFFER_DEVICE_AUTO_LOCK_MINUTES=5\n"
    )
    s = load_settings(environ={}, config_file=conf)
    assert (s.listen, s.data_dir, s.pinned_root_fingerprint, s.auto_lock_seconds) == (
        "10.0.0.1:1000",
        Path("/from/file"),
        FP,
        300,
    )
    env = {"COFFER_DEVICE_CONFIG": str(conf), "COFFER_DEVICE_DATA_DIR": "/from/env", "OTHER": "x"}
    s = load_settings(environ=env)
    assert s.data_dir == Path("/from/env")
    assert s.listen == "10.0.0.1:1000"
    s = load_settings(environ=env, overrides={"data_dir": Path("/from/cli"), "listen": None})
    assert s.data_dir == Path("/from/cli")
    assert s.listen == "10.0.0.1:1000"
    s = load_settings(environ={"COFFER_DEVICE_DATA_DIR": "/d", "COFFER_DEVICE_PINNED_ROOT_FINGERPRINT": ""})
    assert s.pinned_root_fingerprint is None  # empty = no pinned root
    assert s.auto_lock_seconds == 900  # DESIGN.md: 15 minutes


def test_ambient_environment_is_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COFFER_DEVICE_LISTEN", "10.9.9.9:1")
    s = load_settings(environ={"COFFER_DEVICE_DATA_DIR": "/d"})
    assert s.listen == "127.0.0.1:8470"


def test_settings_built_directly_read_nothing_ambient(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """One way to configure the device (issue 12, code health): `load_settings` is the only place the
    environment and coffer.conf come in; a settings object built directly holds what it was given (before,
    `DeviceSettings(...)` read `COFFER_DEVICE_*` from the process environment by itself)."""
    for name, value in {
        "COFFER_DEVICE_TCTI": "swtpm:port=9",
        "COFFER_DEVICE_LISTEN": "10.9.9.9:1",
        "COFFER_DEVICE_TRUST_FIRST_CENTER": "1",
        "COFFER_DEVICE_AUTO_LOCK_SECONDS": "7",
    }.items():
        monkeypatch.setenv(name, value)
    (tmp_path / ".env").write_text("COFFER_DEVICE_TCTI=swtpm:port=8\n")
    monkeypatch.chdir(tmp_path)
    device = DeviceSettings(data_dir=Path("/d"))
    assert (device.tcti, device.trust_first_center, device.auto_lock_seconds) == (
        "device:/dev/tpmrm0",
        False,
        900,
    )
    service = ServiceSettings(data_dir=Path("/d"))
    assert (service.tcti, service.listen) == ("device:/dev/tpmrm0", "127.0.0.1:8470")


def test_the_environment_and_the_file_are_pydantic_settings_sources(tmp_path: Path) -> None:
    conf = tmp_path / "coffer.conf"
    conf.write_text("; coffer.conf\nCOFFER_DEVICE_TCTI=swtpm:port=1\nCOFFER_DEVICE_SUBNET=10.0.0.0/30\n")
    assert EnvironmentFileSource(ServiceSettings, conf)() == {"tcti": "swtpm:port=1", "subnet": "10.0.0.0/30"}
    environ = {
        "COFFER_DEVICE_TCTI": "swtpm:port=2",
        "COFFER_DEVICE_CONFIG": str(conf),
        "COFFER_DEVICE_LISTEN": "",
    }
    assert EnvironmentSource(ServiceSettings, environ)() == {"tcti": "swtpm:port=2"}
    settings = load_settings(
        environ=environ | {"COFFER_DEVICE_DATA_DIR": "/d"}, overrides={"listen": "10.0.0.1:2"}
    )
    assert (settings.tcti, settings.listen) == ("swtpm:port=2", "10.0.0.1:2")
    assert load_settings(environ={"COFFER_DEVICE_DATA_DIR": "/d"}, config_file=conf).tcti == "swtpm:port=1"


def test_the_gadget_reads_coffer_conf_as_the_service_does(tmp_path: Path) -> None:
    """One reader of coffer.conf (`device_os.envfile`): the USB gadget, which runs before the service, reads
    the same values from it as the service's settings (before, it had its own reader without continuation
    lines or escapes in quotes)."""
    text = (
        "; coffer.conf\n"
        'COFFER_DEVICE_LISTEN="192.168.7.1:8470"\n'
        "COFFER_DEVICE_LINK_SUBNET=192.168.7.0/\\\n"
        "30\n"
        'COFFER_DEVICE_NOTE="a \\"quoted\\" word"\n'
    )
    conf = tmp_path / "coffer.conf"
    conf.write_text(text)
    values = gadget.read_conf(conf)
    assert values == parse_environment_file(text)
    assert values["COFFER_DEVICE_NOTE"] == 'a "quoted" word'
    link = gadget.LinkConfig.from_conf(values)
    assert (str(link.address), str(link.subnet)) == ("192.168.7.1", "192.168.7.0/30")
    service = load_settings(environ={"COFFER_DEVICE_DATA_DIR": "/d"}, config_file=conf)
    assert service.address() == (str(link.address), 8470)
    conf.write_text("COFFER_DEVICE_LISTEN\n")
    with pytest.raises(gadget.GadgetError, match="line 1"):
        gadget.read_conf(conf)


def test_the_gadget_needs_nothing_beyond_the_standard_library() -> None:
    """The gadget runs before the service: importable without site-packages (no pydantic, no cryptography)."""
    root = Path(__file__).resolve().parents[2]
    code = "import device_os.gadget, sys; print(sorted(m for m in sys.modules if m.startswith('device_os')))"
    result = subprocess.run(
        [sys.executable, "-S", "-c", code], cwd=root, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "device_os.envfile" in result.stdout  # the one reader of coffer.conf, standard library only


def test_listen_address() -> None:
    assert parse_listen("127.0.0.1:8470") == ("127.0.0.1", 8470)
    assert parse_listen("[fe80::1]:8470") == ("fe80::1", 8470)
    for bad in (
        "0.0.0.0:8470",
        "[::]:1",
        "localhost:8470",
        "127.0.0.1",
        "127.0.0.1:0",
        "::1:80",
        "1.2.3.4:99999",
    ):
        with pytest.raises(ValueError, match="listen"):
            parse_listen(bad)
    with pytest.raises(ValidationError):
        load_settings(environ={"COFFER_DEVICE_DATA_DIR": "/d", "COFFER_DEVICE_LISTEN": "0.0.0.0:80"})
    s = load_settings(environ={"COFFER_DEVICE_DATA_DIR": "/d", "COFFER_DEVICE_LISTEN": "[::1]:9000"})
    assert s.allowed_hosts() == {"[::1]", "[::1]:9000"}


def test_trust_first_center_is_off_unless_set() -> None:
    """Issue 12, finding 3: trust on first use only when explicitly asked for."""
    s = load_settings(environ={"COFFER_DEVICE_DATA_DIR": "/d"})
    assert (s.trust_first_center, s.root_pinning()) == (False, "none")
    s = load_settings(environ={"COFFER_DEVICE_DATA_DIR": "/d", "COFFER_DEVICE_TRUST_FIRST_CENTER": "1"})
    assert (s.trust_first_center, s.root_pinning()) == (True, "trust-first")
    env = {"COFFER_DEVICE_DATA_DIR": "/d", "COFFER_DEVICE_TRUST_FIRST_CENTER": "1"}
    s = load_settings(environ=env | {"COFFER_DEVICE_PINNED_ROOT_FINGERPRINT": FP})
    assert s.root_pinning() == "pinned"  # a pinned root wins
    with pytest.raises(ValueError, match="trust_first_center"):
        load_settings(environ={"COFFER_DEVICE_DATA_DIR": "/d", "COFFER_DEVICE_TRUST_FIRST_CENTER": "maybe"})


def test_nothing_the_device_reads_arms_the_fault_hook(tmp_path: Path) -> None:
    """The test-only fault hook is no setting: neither coffer.conf nor the environment can arm it on a board
    (before, `COFFER_DEVICE_FAULT` in the EnvironmentFile would SIGKILL the service mid-commit)."""
    conf = tmp_path / "coffer.conf"
    conf.write_text("COFFER_DEVICE_FAULT=after-write-next\n")
    environ = {"COFFER_DEVICE_DATA_DIR": str(tmp_path), "COFFER_DEVICE_FAULT": "after-fsync-next"}
    settings = load_settings(environ=environ, config_file=conf)
    assert "fault" not in type(settings).model_fields
    assert "after" not in settings.model_dump_json()
    assert not faults.installed().armed
