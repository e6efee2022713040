"""/api/v1/runtimes and /api/v1/workers: what the grid can run on."""

from __future__ import annotations

from fastapi import APIRouter

from rgrid import schemas
from rgrid.api.deps import CurrentPrincipal, GridDep
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
    """The active workers (the workers table), each with its slots busy and total."""
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
        )
        for worker, busy in await service.listing(grid)
    ]
