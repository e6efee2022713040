"""/api/v1/trees: a project tree sent once, then named by the runs that carry it."""

from __future__ import annotations

from fastapi import APIRouter

from rgrid import schemas
from rgrid.api.deps import CurrentPrincipal, DigestPath, GridDep
from rgrid.services import trees as service

router = APIRouter(prefix="/api/v1/trees", tags=["trees"])


@router.put("/{digest}")
async def put_tree(
    digest: DigestPath, body: schemas.TreeIn, grid: GridDep, principal: CurrentPrincipal
) -> schemas.TreePublic:
    """Store a tree whose files are uploaded (idempotent); ``digest`` is its digest."""
    tree = await service.register(grid, principal, digest, body)
    return schemas.TreePublic(
        digest=tree.digest, files=len(tree.files), bytes=sum(ref.size for ref in tree.files)
    )
