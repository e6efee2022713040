"""/api/v1/runtimes and /api/v1/workers: what the grid can run on."""

from __future__ import annotations

from fastapi import APIRouter, Request

from rgrid import schemas
from rgrid.api.deps import CurrentPrincipal, GridDep
from rgrid.sandbox import detect
from rgrid.services.runtimes import PRESETS

router = APIRouter(prefix="/api/v1", tags=["workers"])


@router.get("/runtimes")
async def runtimes(grid: GridDep, _principal: CurrentPrincipal) -> schemas.RuntimesPublic:
    return schemas.RuntimesPublic(
        pythons=[f"python{v}" for v in grid.pythons],
        default=f"python{grid.default_python}",
        presets={name: list(packages) for name, packages in PRESETS.items()},
    )


@router.get("/workers")
async def workers(
    request: Request, grid: GridDep, _principal: CurrentPrincipal
) -> list[schemas.WorkerPublic]:
    executor = request.app.state.dispatcher.executor
    return [
        schemas.WorkerPublic(
            name=grid.settings.worker_name,
            state="active",
            slots=executor.slots,
            busy=len(executor.running()),
            sandbox=detect().strength,
            pythons=[f"python{v}" for v in grid.pythons],
        )
    ]
