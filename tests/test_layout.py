"""The project's dependency rules (DESIGN.md, top; STYLE.md 6), checked on the source with `ast`.

- `center`, `device_os` and `terminal_cli` import `protocol`, never each other;
- `protocol` imports none of the three programs;
- only `device_os/tpm/` imports tpm2_pytss;
- in `protocol`, only the HTTP adapter `protocol/http/asgi.py` imports a web framework (the wire formats stay
  framework-free; the terminal never loads Starlette through `protocol`).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = ("center", "device_os", "terminal_cli")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PROGRAMS)
def test_programs_do_not_import_each_other(package: str) -> None:
    others = set(PROGRAMS) - {package}
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & others)
        for path in _sources(package)
        if _imports(path) & others
    }
    assert offenders == {}


def test_protocol_imports_no_program() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in _sources("protocol") if _imports(p) & set(PROGRAMS)]
    assert offenders == []


def test_only_the_tpm_adapter_imports_tpm2_pytss() -> None:
    adapter = ROOT / "device_os" / "tpm"
    offenders = [
        str(p.relative_to(ROOT))
        for package in ("protocol", *PROGRAMS)
        for p in _sources(package)
        if "tpm2_pytss" in _imports(p) and adapter not in p.parents
    ]
    assert offenders == []


def test_only_the_http_adapter_in_protocol_imports_a_web_framework() -> None:
    adapter = ROOT / "protocol" / "http" / "asgi.py"
    offenders = [
        str(p.relative_to(ROOT))
        for p in _sources("protocol")
        if _imports(p) & {"starlette", "fastapi", "uvicorn"} and p != adapter
    ]
    assert offenders == []
    assert _imports(adapter) & {"starlette", "fastapi"}


def test_the_rules_see_real_code() -> None:
    """Guard against the checks above passing vacuously (an empty or moved tree)."""
    assert "protocol" in _imports(ROOT / "center" / "keys.py")
    assert any("tpm2_pytss" in _imports(p) for p in _sources("device_os/tpm"))


def test_importing_the_device_changes_no_environment() -> None:
    """No work at import time (STYLE.md 11): importing device_os (TPM adapter, service, CLI) and protocol
    leaves the process environment as it was (the adapter set TSS2_LOG at import; now when a Tpm opens)."""
    code = (
        "import os, json; before = dict(os.environ)\n"
        "import device_os.tpm, device_os.serve, device_os.__main__, device_os.api.app, protocol.attestation\n"
        "print(json.dumps({k: v for k, v in os.environ.items() if before.get(k) != v}))"
    )
    env = {k: v for k, v in os.environ.items() if k != "TSS2_LOG"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {}
