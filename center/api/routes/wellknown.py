"""`GET /.well-known/coffer`: the root-signed key set (DESIGN.md "Keys", `coffer-keyset`)."""

from __future__ import annotations

from fastapi import APIRouter

from center.api.deps import ContextDep
from protocol.api.catalog import WellKnownCoffer

router = APIRouter(tags=["keys"])


@router.get("/.well-known/coffer", response_model=WellKnownCoffer)
async def well_known(context: ContextDep) -> WellKnownCoffer:
    keys = context.keys
    return WellKnownCoffer(
        keyset=keys.keyset_jws,
        root_fingerprint=keys.root_fingerprint,
        root_jwk=keys.root_jwk,
        version=keys.keyset_version,
        issuer=context.settings.issuer_url(),
    )
