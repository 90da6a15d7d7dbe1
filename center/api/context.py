"""What the routes share: built once by `create_app`, reached through `center.api.deps`."""

from __future__ import annotations

from dataclasses import dataclass

from jinja2 import Environment
from sqlalchemy import Engine

from center.blobs import BlobStore
from center.keys import CenterKeys
from center.services.admin import AdminService
from center.services.catalog import CatalogService
from center.services.common import Commerce
from center.services.credits import CreditService
from center.services.enrollment import EnrollmentService
from center.services.orders import OrderService
from center.services.settlement import SettlementService
from center.services.statements import StatementService
from center.settings import CenterSettings


@dataclass(frozen=True)
class CenterContext:
    settings: CenterSettings
    keys: CenterKeys
    engine: Engine
    blobs: BlobStore
    catalog: CatalogService
    templates: Environment
    commerce: Commerce
    enrollment: EnrollmentService
    credits: CreditService
    orders: OrderService
    settlement: SettlementService
    statements: StatementService
    admin: AdminService
