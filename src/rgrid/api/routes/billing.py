"""/api/v1/cost and /api/v1/billing/periods: what executions cost (SPEC §11)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter

from rgrid import errors
from rgrid.api.deps import CurrentPrincipal, GridDep
from rgrid.services import billing as service

router = APIRouter(prefix="/api/v1", tags=["cost"])


@router.get("/cost")
async def cost(
    grid: GridDep,
    principal: CurrentPrincipal,
    since: datetime | None = None,
    until: datetime | None = None,
    by: str = "day",
) -> dict[str, Any]:
    """Your executions' cost grouped by day, batch or metadata:KEY, and the total."""
    for value in (since, until):
        if value is not None and value.tzinfo is None:
            raise errors.InvalidRequest("since/until need a timezone")
    groups = await service.cost_report(grid, principal, since=since, until=until, by=by)
    return {
        "by": by,
        "groups": groups,
        "total": {
            "executions": sum(g["executions"] for g in groups),
            "compute_us": sum(g["compute_us"] for g in groups),
            "cost_micros": sum(g["cost_micros"] for g in groups),
        },
    }


@router.get("/billing/periods")
async def periods(grid: GridDep, principal: CurrentPrincipal) -> list[dict[str, Any]]:
    """Closed billing periods of every worker with their split (admin key only)."""
    return await service.periods_report(grid, principal)
