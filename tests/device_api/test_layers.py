"""One way through the device (issue 12, code health; STYLE.md 13): every route goes route -> service -> core.

Checked on the source with `ast`: a route hands the wallet the gate authenticated only to the service (a
`DeviceService` method, or `import_purchase` for the streamed upload), never calls or reads it itself, never
reaches the core through `service.device`, and imports nothing of the core but its answer models.
"""

from __future__ import annotations

import ast
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
