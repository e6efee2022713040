"""/api/v1/attempt: what a runner on another machine asks of the control plane for the one
attempt its credential names (``services.attempts``): the execution's environment values, its
inputs, appending its log lines, storing its outputs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from starlette.requests import HTTPConnection

from rgrid import domain, schemas
from rgrid.api.deps import DigestPath, GridDep
from rgrid.services import attempts as service
from rgrid.services import blobs, plane
from rgrid.services.attempts import Held
from rgrid.services.plane import Attempt

router = APIRouter(prefix="/api/v1/attempt", tags=["attempt"])


async def _attempt(connection: HTTPConnection, grid: GridDep) -> tuple[Attempt, Held]:
    scheme, _, credential = connection.headers.get("authorization", "").partition(" ")
    token = credential.strip() if scheme.lower() == service.SCHEME else None
    return await service.resolve(grid, token)


AttemptDep = Annotated[tuple[Attempt, Held], Depends(_attempt)]


@router.get("/env")
async def environment(grid: GridDep, attempt: AttemptDep) -> schemas.AttemptEnv:
    """The execution's ``--env`` values (kept encrypted; never part of the task itself)."""
    _, execution = attempt
    return schemas.AttemptEnv(env=grid.secrets.open(execution.env_ciphertext))


@router.get(
    "/inputs/{digest}",
    response_class=StreamingResponse,
    responses={307: {"description": "the bytes are at the storage URL in Location"}},
)
async def input_content(digest: DigestPath, grid: GridDep, attempt: AttemptDep) -> Response:
    """The input's bytes: a redirect to an expiring storage URL where the storage has them
    (S3), else streamed from storage through here, verified on the way."""
    who, execution = attempt
    ref = await service.input_of(grid, who, execution, digest)
    url = await service.input_url(grid, who, ref)
    if url is not None:
        return RedirectResponse(url, status_code=307)
    body = blobs.verified_read(grid, who.account_id, digest, ref.size, f"input {ref.path!r}")
    return StreamingResponse(
        body,
        media_type="application/octet-stream",
        headers={"content-length": str(ref.size)},
    )


@router.post("/logs", status_code=204)
async def append_logs(body: schemas.AttemptLogsIn, grid: GridDep, attempt: AttemptDep) -> None:
    who, _ = attempt
    segments = [
        domain.LogSegment(s.first_seq, who.attempt, s.stream, s.ts, s.text, s.line_count)
        for s in body.segments
    ]
    if segments:
        await plane.append_logs(grid, who, segments)


@router.put("/outputs/{digest}", status_code=201)
async def store_output(
    digest: DigestPath, request: Request, grid: GridDep, attempt: AttemptDep
) -> schemas.BlobStored:
    """An output's bytes, verified against ``digest`` as they arrive and streamed to storage."""
    who, _ = attempt
    raw = request.headers.get("content-length")
    size = int(raw) if raw is not None and raw.isdigit() else None
    stored = await service.store_output(grid, who, digest, request.stream(), size)
    return schemas.BlobStored(digest=digest, size=stored)
