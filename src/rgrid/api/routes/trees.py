"""/api/v1/trees: a project tree sent once, then named by the runs that carry it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from rgrid import schemas
from rgrid.api.deps import CurrentPrincipal, GridDep
from rgrid.services import trees as service

router = APIRouter(prefix="/api/v1/trees", tags=["trees"])

Sha256Path = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]


@router.put("/{sha256}")
async def put_tree(
    sha256: Sha256Path, body: schemas.TreeIn, grid: GridDep, principal: CurrentPrincipal
) -> schemas.TreePublic:
    """Store a tree whose files are uploaded (idempotent); ``sha256`` is its digest."""
    tree = await service.register(grid, principal, sha256, body)
    return schemas.TreePublic(
        sha256=tree.sha256, files=len(tree.files), bytes=sum(ref.size for ref in tree.files)
    )
