"""/api/v1/blobs: content-addressed uploads scoped to the caller's account."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from rgrid import compression, errors, schemas
from rgrid.api.deps import CurrentPrincipal, GridDep
from rgrid.services import blobs as service

router = APIRouter(prefix="/api/v1/blobs", tags=["blobs"])

Sha256Path = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]


@router.post("/missing")
async def missing(
    body: schemas.BlobsQuery, grid: GridDep, principal: CurrentPrincipal
) -> schemas.BlobsMissing:
    return schemas.BlobsMissing(missing=await service.missing_blobs(grid, principal, body.sha256))


@router.put("/{sha256}", status_code=201)
async def upload(
    sha256: Sha256Path, request: Request, grid: GridDep, principal: CurrentPrincipal
) -> schemas.BlobStored:
    encoding = request.headers.get("content-encoding")
    # compressed, Content-Length is the wire size; the stored size travels in its own header
    length = request.headers.get(
        compression.SIZE_HEADER if encoding == compression.ENCODING else "content-length"
    )
    try:
        size = int(length) if length is not None else None
    except ValueError as exc:
        raise errors.InvalidRequest("invalid Content-Length or size header") from exc
    stored = await service.upload_blob(
        grid, principal, sha256, request.stream(), size, encoding=encoding
    )
    return schemas.BlobStored(sha256=sha256, size=stored)
