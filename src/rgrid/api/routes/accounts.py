"""/api/v1/me, /api/v1/accounts, /api/v1/keys: who am I, and administration."""

from __future__ import annotations

from fastapi import APIRouter

from rgrid import schemas
from rgrid.api import convert
from rgrid.api.deps import CurrentPrincipal, GridDep
from rgrid.services import accounts as service

router = APIRouter(prefix="/api/v1", tags=["accounts"])


@router.get("/me")
async def me(principal: CurrentPrincipal) -> schemas.Me:
    return schemas.Me(account=convert.account(principal.account), key_id=principal.key_id)


@router.post("/accounts", status_code=201)
async def create_account(
    body: schemas.AccountCreate, grid: GridDep, principal: CurrentPrincipal
) -> schemas.AccountCreated:
    account, key = await service.create_account(grid, principal, body.name, body.is_admin)
    return schemas.AccountCreated(account=convert.account(account), key=key)


@router.post("/keys", status_code=201)
async def create_key(
    body: schemas.KeyCreate, grid: GridDep, principal: CurrentPrincipal
) -> schemas.KeyCreated:
    info, key = await service.create_key(grid, principal, body.account_id, body.name)
    return schemas.KeyCreated(key=key, info=convert.key(info))


@router.get("/keys")
async def list_keys(grid: GridDep, principal: CurrentPrincipal) -> list[schemas.KeyPublic]:
    return [convert.key(k) for k in await service.list_keys(grid, principal)]


@router.post("/keys/{key_id}/revoke")
async def revoke_key(key_id: str, grid: GridDep, principal: CurrentPrincipal) -> schemas.KeyPublic:
    return convert.key(await service.revoke_key(grid, principal, key_id))
