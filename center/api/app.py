"""`create_app(settings)`: the center's FastAPI application (STYLE.md item 11: no work at import time)."""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.types import ASGIApp

from center.api import access, openapi, problems
from center.api.context import CenterContext
from center.api.lean import LeanItems
from center.api.lean_orders import LeanOrders
from center.api.limits import BodyLimit
from center.api.routes import credits, devices, health, items, orders, statements, storefront, wellknown
from center.api.security import SecurityHeaders, security_headers
from center.blobs import LocalBlobStore
from center.db.engine import make_engine, session_factory
from center.db.group import GroupCommit
from center.keys import CenterKeys, load_or_create
from center.services.admin import AdminService
from center.services.catalog import CatalogService
from center.services.common import Commerce
from center.services.credits import CreditService
from center.services.enrollment import EnrollmentService, load_ek_trust
from center.services.orders import OrderService
from center.services.settlement import SettlementService
from center.services.statements import StatementService
from center.settings import CenterSettings

log = logging.getLogger("center")

#: the GIL's switch interval in each of several workers (seconds; Python's default is 0.005)
SWITCH_INTERVAL = 0.0005
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def _money(amount: int, currency: str) -> str:
    return f"{amount:,} {currency}"


def templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True), auto_reload=False
    )
    env.filters["money"] = lambda price: _money(price.amount, price.currency)
    env.filters["kib"] = lambda n: f"{n / 1024:.1f} KiB"
    return env


class CenterApp(FastAPI):
    """The FastAPI app with the lean paths in front of its whole middleware stack: `GET /v1/items`
    (center.api.lean) when `lean_items` is set, `POST /v1/orders` and `POST /v1/orders/{id}/payment`
    (center.api.lean_orders) when `lean_orders` is set (tests compare each with the app without it)."""

    lean_items: bool = True
    lean_orders: bool = True

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        context: CenterContext = self.state.center
        headers = security_headers(hsts=context.settings.tls)
        if self.lean_orders:
            stack = LeanOrders(stack, context, headers)
        if self.lean_items:
            stack = LeanItems(stack, context.catalog, headers)
        return stack


def create_app(
    settings: CenterSettings,
    *,
    keys: CenterKeys | None = None,
    lean_items: bool = True,
    lean_orders: bool = True,
) -> FastAPI:
    """Build the app for `settings`: keys (created on first start), engine, blob store, services.

    The database must already be migrated (`center serve` and `center db upgrade` do it). `lean_items=False`
    leaves `GET /v1/items` to the FastAPI route alone (tests compare the two; docs/center.md),
    `lean_orders=False` the order and payment writes (docs/center-commerce.md).
    """
    keys = keys if keys is not None else load_or_create(settings.keys_dir, settings.issuer_url())
    engine = make_engine(settings.sqlalchemy_url(), sqlite_synchronous=settings.sqlite_synchronous)
    blobs = LocalBlobStore(settings.blobs_dir)
    sessions = session_factory(engine)
    catalog = CatalogService(sessions, blobs, settings.data_dir / "tmp")
    # SQLite: orders and payments that arrive together share one transaction and one fsync (center.db.group)
    group = GroupCommit(engine, sessions) if engine.dialect.name == "sqlite" else None
    commerce = Commerce(sessions, keys, settings, blobs, group=group)
    context = CenterContext(
        settings,
        keys,
        engine,
        blobs,
        catalog,
        templates(),
        commerce,
        EnrollmentService(commerce, load_ek_trust(settings.ek_ca)),
        CreditService(commerce),
        OrderService(commerce),
        SettlementService(commerce),
        StatementService(commerce),
        AdminService(commerce),
    )
    if settings.allow_unattested:
        log.warning("--allow-unattested: EK certificate chains are NOT checked (tests and demos only)")
    elif not settings.ek_ca:
        log.warning("no EK CA configured (--ek-ca): every enrollment will be refused")

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # What is alive once the server starts (modules, the app, SQLAlchemy's and pydantic's metadata) lives
        # as long as the process: moved out of the collector's generations, full collections stop scanning it
        # (measured: ~0.06 ms of CPU per order, a tenth of it; docs/center-commerce.md "Performance").
        gc.collect()
        gc.freeze()
        if settings.workers > 1:
            # one of several workers (center.api.serving): the event loop and the group commit's writer
            # thread take turns on the GIL; at the default 5 ms switch interval the writer, which holds
            # SQLite's write lock for all workers, waited that long for it after each statement
            # (measured with 2 workers: 1,367 → 1,611 orders/s at 64 clients; docs/center-commerce.md)
            sys.setswitchinterval(SWITCH_INTERVAL)
        yield
        catalog.close()
        engine.dispose()

    app = CenterApp(
        title="Coffer center",
        version="1",
        description='Catalog, previews and storefront of a Coffer center (DESIGN.md "Center API"). '
        "Every error is application/problem+json (RFC 9457) with a type from protocol/problems.py.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.center = context
    app.lean_items = lean_items
    app.lean_orders = lean_orders
    for router in (
        storefront.router,
        health.router,
        wellknown.router,
        items.router,
        devices.router,
        credits.router,
        orders.router,
        statements.router,
    ):
        app.include_router(router)
    problems.install(app)
    openapi.install(app)
    access.enforce(app)
    app.add_middleware(BodyLimit)
    app.add_middleware(SecurityHeaders, hsts=settings.tls)
    return app
