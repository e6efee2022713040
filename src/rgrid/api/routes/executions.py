"""/api/v1/executions: submit, list, inspect, cancel, logs, outputs."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, StreamingResponse
from starlette.convertors import PathConvertor, register_url_convertor

from rgrid import bounds, compression, domain, errors, schemas
from rgrid.api import convert
from rgrid.api.deps import CurrentPrincipal, GridDep
from rgrid.domain import ArtifactKind, ExecutionState
from rgrid.services import blobs as blob_service
from rgrid.services import executions as service
from rgrid.services import limits

router = APIRouter(prefix="/api/v1/executions", tags=["executions"])


class AnyPathConvertor(PathConvertor):
    """Starlette's ``path`` matches ``.*``, which stops at a newline; an output's name may hold
    any character but NUL (a POSIX name), so its route matches every character."""

    regex = r"[\s\S]*"


register_url_convertor("anypath", AnyPathConvertor())

MAX_PAGE = 1000


def _encode_cursor(item: domain.Execution) -> str:
    raw = json.dumps([item.created_at.isoformat(), item.id]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    try:
        created, last_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        when = bounds.utc_time(datetime.fromisoformat(created), "cursor")
    except (ValueError, TypeError, errors.InvalidRequest) as exc:
        raise errors.InvalidRequest("invalid cursor") from exc
    assert when is not None
    return when, str(last_id)


def _metadata_filters(pairs: list[str]) -> dict[str, str]:
    if len(pairs) > bounds.MAX_METADATA_FILTERS:
        raise errors.InvalidRequest(
            f"at most {bounds.MAX_METADATA_FILTERS} metadata filters, not {len(pairs)}",
            details={"limit": "MAX_METADATA_FILTERS", "value": len(pairs)},
        )
    parsed = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
    if len(parsed) != len(pairs):
        raise errors.InvalidRequest("metadata filters must look like KEY=VALUE")
    return parsed


@router.post("", status_code=201)
async def submit(
    body: schemas.ExecutionCreate, grid: GridDep, principal: CurrentPrincipal
) -> schemas.ExecutionPublic:
    warning = await limits.before_submit(grid, principal)
    public = convert.execution(await service.submit(grid, principal, body))
    public.warning = warning
    return public


@router.get("")
async def list_executions(
    grid: GridDep,
    principal: CurrentPrincipal,
    status: Annotated[list[ExecutionState] | None, Query()] = None,
    metadata: Annotated[list[str] | None, Query()] = None,
    since: datetime | None = None,
    batch: str | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    until: datetime | None = None,
    script: Annotated[str | None, Query(max_length=bounds.MAX_NAME_CHARS)] = None,
    id_prefix: Annotated[str | None, Query(max_length=40, pattern=r"^[A-Za-z0-9_]*$")] = None,
) -> schemas.ExecutionsPublic:
    """Newest first, one page at a time (pass ``next_cursor`` back as ``cursor``), narrowed
    by state, batch, metadata KEY=VALUE, creation time (``since`` ≤ t < ``until``), script
    name and id prefix."""
    items = await service.list_executions(
        grid,
        principal,
        states=status or [],
        metadata=_metadata_filters(metadata or []),
        since=bounds.utc_time(since, "since"),
        batch=batch,
        cursor=_decode_cursor(cursor),
        limit=limit,
        narrow=service.ListNarrowing(
            until=bounds.utc_time(until, "until"), script=script or None, id_prefix=id_prefix
        ),
    )
    next_cursor = _encode_cursor(items[-1]) if len(items) == limit else None
    data = [convert.execution(e) for e in items]
    return schemas.ExecutionsPublic(data=data, count=len(data), next_cursor=next_cursor)


@router.get("/{execution_id}")
async def get_execution(
    execution_id: str, grid: GridDep, principal: CurrentPrincipal
) -> schemas.ExecutionPublic:
    return convert.execution(await service.get(grid, principal, execution_id))


@router.post("/{execution_id}/retry", status_code=201)
async def retry_execution(
    execution_id: str, grid: GridDep, principal: CurrentPrincipal, force: bool = False
) -> schemas.ExecutionPublic:
    warning = await limits.before_submit(grid, principal)
    public = convert.execution(await service.retry(grid, principal, execution_id, force=force))
    public.warning = warning
    return public


@router.post("/{execution_id}/cancel")
async def cancel_execution(
    execution_id: str, grid: GridDep, principal: CurrentPrincipal
) -> schemas.ExecutionPublic:
    return convert.execution(await service.cancel(grid, principal, execution_id))


@router.get("/{execution_id}/artifacts")
async def list_artifacts(
    execution_id: str,
    grid: GridDep,
    principal: CurrentPrincipal,
    kind: ArtifactKind | None = None,
) -> schemas.ArtifactsPublic:
    _, items = await service.list_artifacts(grid, principal, execution_id, kind)
    data = [convert.artifact(a) for a in items]
    return schemas.ArtifactsPublic(data=data, count=len(data))


@router.get("/{execution_id}/outputs/{path:anypath}", response_model=None)
async def download_output(
    execution_id: str, path: str, request: Request, grid: GridDep, principal: CurrentPrincipal
) -> StreamingResponse | RedirectResponse:
    """The file's bytes; zstd-compressed when the client accepts it and it pays (SPEC §5).
    A big output on storage that can serve it directly (S3) is a 307 to a presigned URL."""
    artifact, direct = await service.output_source(grid, principal, execution_id, path)
    if direct is not None:
        return RedirectResponse(direct, status_code=307)
    stream = service.output_stream(grid, principal, artifact)
    accepted = request.headers.get("accept-encoding", "")
    compress = compression.ENCODING in accepted and compression.worth_compressing(
        artifact.path, artifact.size
    )
    headers = {
        "x-rgrid-digest": artifact.digest,
        compression.SIZE_HEADER: str(artifact.size),
        # a browser (the console's download link) saves it under its own name
        "content-disposition": _attachment(artifact.path),
    }
    if compress:
        headers["content-encoding"] = compression.ENCODING
    else:
        headers["content-length"] = str(artifact.size)
    body = blob_service.sent(grid, stream, compress=compress)
    return StreamingResponse(body, media_type="application/octet-stream", headers=headers)


def _attachment(path: str) -> str:
    """``Content-Disposition`` naming the file (RFC 6266: an ASCII fallback and the UTF-8 name)."""
    name = path.rsplit("/", 1)[-1]
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
