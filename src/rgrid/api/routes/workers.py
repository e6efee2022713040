"""/api/v1/runtimes and /api/v1/workers: what the grid can run on."""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter

from rgrid import schemas
from rgrid.api.deps import CurrentPrincipal, GridDep
from rgrid.services import utcnow
from rgrid.services import workers as service
from rgrid.services.runtimes import PRESETS

router = APIRouter(prefix="/api/v1", tags=["workers"])


@router.get("/runtimes")
async def runtimes(grid: GridDep, _principal: CurrentPrincipal) -> schemas.RuntimesPublic:
    return schemas.RuntimesPublic(
        pythons=await service.pythons(grid),
        default=f"python{grid.default_python}",
        presets={name: list(packages) for name, packages in PRESETS.items()},
    )


@router.get("/workers")
async def workers(grid: GridDep, _principal: CurrentPrincipal) -> list[schemas.WorkerPublic]:
    """The workers that are there, and autoscaled nodes that ended within the hour, each
    with its slots busy and total and the end of its current billing period."""
    now = utcnow()
    return [
        schemas.WorkerPublic(
            name=worker.id,
            state=worker.state,
            slots=worker.slots,
            busy=busy,
            sandbox=worker.sandbox,
            pythons=list(worker.pythons),
            node=worker.node,
            executor=worker.executor,
            hourly_price_micros=worker.hourly_price_micros,
            heartbeat_at=worker.heartbeat_at,
            started_at=worker.started_at,
            provider=worker.provider,
            provider_id=worker.provider_id,
            kind=worker.kind,
            period_end=service.period_end(worker, now),
            ended_at=worker.ended_at,
        )
        for worker, busy in await service.listing(grid)
    ]


@router.get("/autoscaler")
async def autoscaler(grid: GridDep, _principal: CurrentPrincipal) -> schemas.AutoscalerPublic:
    """Where this server's autoscaler stands: its last decision and provider error."""
    # the main process runs it: the server's other processes know it from its report
    status = grid.siblings.whole().autoscaler if grid.siblings else grid.autoscaler
    if status is None:
        return schemas.AutoscalerPublic(enabled=False)
    return schemas.AutoscalerPublic(enabled=True, **dataclasses.asdict(status))
