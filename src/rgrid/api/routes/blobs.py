"""/api/v1/blobs: content-addressed uploads scoped to the caller's account."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from rgrid import bounds, compression, errors, schemas
from rgrid.api.deps import CurrentPrincipal, DigestPath, GridDep
from rgrid.services import blobs as service

router = APIRouter(prefix="/api/v1/blobs", tags=["blobs"])
RESUMABLE_HEADER, OFFSET_HEADER = schemas.RESUMABLE_HEADER, schemas.OFFSET_HEADER


@router.post("/missing")
async def missing(
    body: schemas.BlobsQuery, grid: GridDep, principal: CurrentPrincipal
) -> schemas.BlobsMissing:
    return schemas.BlobsMissing(missing=await service.missing_blobs(grid, principal, body.digests))


@router.get("/{digest}/upload")
async def upload_progress(
    digest: DigestPath, grid: GridDep, principal: CurrentPrincipal
) -> schemas.UploadProgress:
    """How much of a resumable upload of this content the grid already holds."""
    offset = await service.upload_offset(grid, principal.account.id, digest)
    return schemas.UploadProgress(digest=digest, offset=offset)


@router.put("/{digest}", status_code=201, response_model=None)
async def upload(
    digest: DigestPath, request: Request, grid: GridDep, principal: CurrentPrincipal
) -> schemas.BlobStored | JSONResponse:
    """The content, whole; or, with ``x-rgrid-resumable: 1`` and ``x-rgrid-size``, a piece
    starting at ``x-rgrid-offset`` (202 and the offset reached until it is complete)."""
    resumable = request.headers.get(RESUMABLE_HEADER) == "1"
    offset = _header_int(request, OFFSET_HEADER) or 0
    encoding = request.headers.get("content-encoding")
    # compressed or resumed, Content-Length is the wire size; the blob's size has its header
    sized = encoding == compression.ENCODING or resumable or offset
    size = _header_int(request, compression.SIZE_HEADER if sized else "content-length")
    stored = await service.upload_blob(
        grid,
        principal.account.id,
        digest,
        request.stream(),
        size,
        encoding=encoding,
        resumable=resumable,
        offset=offset,
    )
    if stored is None:
        held = await service.upload_offset(grid, principal.account.id, digest)
        progress = schemas.UploadProgress(digest=digest, offset=held)
        return JSONResponse(schemas.dump(progress), status_code=202)
    return schemas.BlobStored(digest=digest, size=stored)


def _header_int(request: Request, name: str) -> int | None:
    """A byte count or offset header: absent, or an integer the store can hold."""
    raw = request.headers.get(name)
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19 and int(raw) <= bounds.INT64_MAX):
        raise errors.InvalidRequest(f"invalid {name} header", details={name: raw[:40]})
    return int(raw)
