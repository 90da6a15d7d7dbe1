"""systemd EnvironmentFile syntax (systemd.exec(5)), the format of the board's `coffer.conf`: one reader for
everything that reads that file (the service's settings, `device_os.api.settings.EnvironmentFileSource`, and
the USB gadget, `device_os.gadget`, which runs before the service and must not need its dependencies: this
module is standard library only).
"""

from __future__ import annotations

import re

_KEY_RE = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*\Z")


class ConfigFileError(ValueError):
    """The config file is not in EnvironmentFile syntax."""


def parse_environment_file(text: str) -> dict[str, str]:
    """systemd EnvironmentFile syntax (systemd.exec(5)): `KEY=VALUE` lines; blank lines and lines starting
    with `#` or `;` ignored; a trailing backslash continues the line; a value may be wrapped in single or
    double quotes (in double quotes, backslash escapes the next character)."""
    values: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + lines[i]
            i += 1
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        key, sep, value = stripped.partition("=")
        key = key.strip()
        if not sep or not _KEY_RE.match(key):
            raise ConfigFileError(f"line {i}: expected KEY=VALUE")
        values[key] = _unquote(value.strip(), i)
    return values


def _unquote(value: str, line: int) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        inner = value[1:-1]
        if value[0] == "'":
            return inner
        return re.sub(r"\\(.)", r"\1", inner)
    if value[:1] in ("'", '"'):
        raise ConfigFileError(f"line {line}: unterminated quote")
    return value
