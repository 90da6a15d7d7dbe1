"""FastAPI dependencies: the shared context and its services (async: no thread-pool hop for a lookup)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from center.api.context import CenterContext
from center.services.catalog import CatalogService


async def get_context(request: Request) -> CenterContext:
    context: CenterContext = request.app.state.center
    return context


async def get_catalog(context: Annotated[CenterContext, Depends(get_context)]) -> CatalogService:
    return context.catalog


ContextDep = Annotated[CenterContext, Depends(get_context)]
CatalogDep = Annotated[CatalogService, Depends(get_catalog)]
