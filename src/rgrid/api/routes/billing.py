"""/api/v1/cost and /api/v1/billing/periods: what executions cost (SPEC §11)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter

from rgrid import bounds, errors, schemas
from rgrid.api import convert
from rgrid.api.deps import CurrentPrincipal, GridDep
from rgrid.services import billing as service
from rgrid.services import limits

router = APIRouter(prefix="/api/v1", tags=["cost"])


@router.get("/cost")
async def cost(
    grid: GridDep,
    principal: CurrentPrincipal,
    since: datetime | None = None,
    until: datetime | None = None,
    by: str = "day",
) -> schemas.CostReport:
    """Your executions' cost grouped by day, batch or metadata:KEY, and the total; with an
    admin key also the grid's idle cost (paid periods in which nothing ran)."""
    since, until = bounds.utc_time(since, "since"), bounds.utc_time(until, "until")
    groups = await service.cost_report(grid, principal, since=since, until=until, by=by)
    idle = await service.idle_report(grid, principal, since, until)
    return convert.cost_report(by, groups, idle)


@router.get("/estimate")
async def estimate(
    script: str, grid: GridDep, principal: CurrentPrincipal, digest: str | None = None
) -> schemas.EstimatePublic:
    """Run-time statistics of your earlier runs of a script, for `rgrid estimate`."""
    return schemas.EstimatePublic(**await service.estimate(grid, principal, script, digest))


@router.get("/cost/limit")
async def show_limit(grid: GridDep, principal: CurrentPrincipal) -> schemas.SpendingLimitPublic:
    current = await limits.show(grid, principal)
    if current is None:
        raise errors.NotFound("no spending limit is set", hint="`rgrid cost limit set 5.00`")
    return convert.spending_limit(current)


@router.put("/cost/limit")
async def set_limit(
    body: schemas.SpendingLimitIn, grid: GridDep, principal: CurrentPrincipal
) -> schemas.SpendingLimitPublic:
    return convert.spending_limit(await limits.set_limit(grid, principal, body.amount, body.period))


@router.delete("/cost/limit", status_code=204)
async def remove_limit(grid: GridDep, principal: CurrentPrincipal) -> None:
    if not await limits.remove(grid, principal):
        raise errors.NotFound("no spending limit is set")


@router.get("/billing/periods")
async def periods(grid: GridDep, principal: CurrentPrincipal) -> list[schemas.BillingPeriodPublic]:
    """Closed billing periods of every worker with their split (admin key only)."""
    return [convert.billing_period(p) for p in await service.periods_report(grid, principal)]
