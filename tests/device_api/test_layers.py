"""One way through the device (issue 12, code health; STYLE.md 13): every route goes route -> service -> core.

Checked on the source with `ast`: a route hands the wallet the gate authenticated only to the service (a
`DeviceService` method, or `import_purchase` for the streamed upload), never calls or reads it itself, never
reaches the core through `service.device`, and imports nothing of the core but its answer models. And the
device and protocol import no package of the dev extra (pyhpke is a test and bench dependency only).
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROUTES = sorted(p for p in (ROOT / "device_os" / "api" / "routes").glob("*.py") if p.name != "deps.py")
#: What a route may hand the wallet to: the service's methods, and the upload's service function.
SERVICE_FUNCTIONS = {"import_purchase"}
#: The core's modules a route may import: the answer models it returns.
CORE_MODULES_FOR_ROUTES = {"device_os.core.answers"}


def _annotation(arg: ast.arg) -> str:
    return ast.unparse(arg.annotation) if arg.annotation is not None else ""


def _callee_is_service(call: ast.Call) -> bool:
    func = call.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return func.value.id == "service"
    return isinstance(func, ast.Name) and func.id in SERVICE_FUNCTIONS


def _offences(source: str, name: str) -> list[str]:
    """Where the route module `source` uses the wallet or the core other than through the service."""
    tree = ast.parse(source, filename=name)
    found: list[str] = []
    for node in ast.walk(tree):
        module = node.module if isinstance(node, ast.ImportFrom) else None
        if module and module.startswith("device_os.core") and module not in CORE_MODULES_FOR_ROUTES:
            found.append(f"{name}:{node.lineno} imports {module}")
        if isinstance(node, ast.Attribute) and ast.unparse(node) == "service.device":
            found.append(f"{name}:{node.lineno} reaches the core through service.device")
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        args = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
        wallets = {a.arg for a in args if _annotation(a) == "WalletDep"}
        handed = set()
        for sub in ast.walk(node):
            if isinstance(sub, ast.Call) and _callee_is_service(sub):
                handed.update(id(a) for a in [*sub.args, *(k.value for k in sub.keywords)])
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and sub.id in wallets and id(sub) not in handed:
                found.append(f"{name}:{sub.lineno} {node.name}() uses the wallet itself: {sub.id}")
    return found


def test_routes_go_through_the_service() -> None:
    assert len(ROUTES) >= 6  # the rule sees the real routes
    offences = [o for path in ROUTES for o in _offences(path.read_text(encoding="utf-8"), path.name)]
    assert offences == []


def test_the_rule_sees_a_route_that_goes_around_the_service() -> None:
    """What the rule exists for (the routes before issue 12's clean-up did each of these)."""
    bad = """
from device_os.core.wallet import Wallet

def outbox(service: ServiceDep, wallet: WalletDep) -> OutboxAnswer:
    return OutboxAnswer(entries=list(wallet.outbox()))

async def content(item: str, service: ServiceDep, wallet: WalletDep) -> Response:
    entry = service.library_entry(wallet, item)
    return await content_response(wallet, entry, None)

def health(service: ServiceDep) -> Health:
    return Health(phase=service.device.phase())
"""
    offences = _offences(bad, "bad.py")
    assert len(offences) == 4, offences
    assert any("imports device_os.core.wallet" in o for o in offences)
    assert any("outbox() uses the wallet" in o for o in offences)
    assert any("content() uses the wallet" in o for o in offences)
    assert any("service.device" in o for o in offences)


#: Import names of the dev extra's distributions (pyproject.toml `[project.optional-dependencies] dev`).
DEV_ONLY = {
    "pytest",
    "pytest_timeout",
    "hypothesis",
    "pyhpke",
    "joserfc",
    "jwcrypto",
    "schemathesis",
    "playwright",
}


def _top_level_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_the_device_and_protocol_import_no_dev_only_package() -> None:
    """Issue 12, code health: pyhpke (an independent HPKE for interop tests and a bench) is in the dev extra
    only; the device's HPKE receiver is protocol/_hpke.py. No product module of the device or protocol imports
    it or any other dev-only package, so a board's venv without the dev extra runs."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert any(d.startswith("pyhpke") for d in project["optional-dependencies"]["dev"])
    assert not any(d.startswith("pyhpke") for d in project["dependencies"])
    sources = [p for package in ("device_os", "protocol") for p in sorted((ROOT / package).rglob("*.py"))]
    assert len(sources) > 50
    found = {f"{p.relative_to(ROOT)}: {sorted(_top_level_imports(p) & DEV_ONLY)}" for p in sources}
    assert {f for f in found if not f.endswith(": []")} == set()


def test_device_and_protocol_modules_stay_small() -> None:
    """Issue 12, code health (and the developers' guide): no module of the device or protocol over 600 lines
    (tpm/adapter.py, core/wallet.py and protocol/attestation.py were split along their seams)."""
    sources = [p for package in ("device_os", "protocol") for p in sorted((ROOT / package).rglob("*.py"))]
    sizes = {str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines()) for p in sources}
    assert sizes["device_os/core/device.py"] > 300  # the rule sees real files
    assert {name: n for name, n in sizes.items() if n > 600} == {}
