"""/api/v1/batches: submit a whole batch, follow its items, cancel or retry them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from rgrid import bounds, schemas
from rgrid.api import convert
from rgrid.api.deps import CurrentPrincipal, GridDep
from rgrid.services import batches as service
from rgrid.services import limits

router = APIRouter(prefix="/api/v1/batches", tags=["batches"])


@router.post("", status_code=201)
async def submit(
    body: schemas.BatchCreate, grid: GridDep, principal: CurrentPrincipal
) -> schemas.BatchPublic:
    warning = await limits.before_submit(grid, principal)
    public = convert.batch(await service.submit_batch(grid, principal, body))
    public.warning = warning
    return public


@router.get("/{batch_id}")
async def get_batch(
    batch_id: str, grid: GridDep, principal: CurrentPrincipal
) -> schemas.BatchPublic:
    batch, _ = await service.get_batch(grid, principal, batch_id)
    return convert.batch(batch)


@router.get("/{batch_id}/items")
async def items(
    batch_id: str,
    grid: GridDep,
    principal: CurrentPrincipal,
    changed_after: datetime | None = None,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=service.MAX_WAIT_S,
            description="seconds the answer may wait for the batch to end (a long poll)",
        ),
    ] = 0.0,
    inline: Annotated[
        int,
        Query(
            ge=0,
            le=service.INLINE_MAX_BYTES,
            description="outputs of up to this many bytes come with their content (base64)",
        ),
    ] = 0,
) -> schemas.BatchItemsPublic:
    """The items (all, or only those changed after ``changed_after``: pass the previous
    answer's ``next_changed_after`` to follow a batch of 10,000 items cheaply). With ``wait``,
    an unfinished batch's answer comes when it ends or after ``wait`` seconds. With
    ``inline``, small outputs come with their bytes (within the page's bounds: the others
    have none, and are downloaded)."""
    after = bounds.utc_time(changed_after, "changed_after")
    batch, executions, following = await service.batch_changes(
        grid, principal, batch_id, after, wait_s=wait
    )
    outputs = await service.finished_outputs(grid, executions)
    contents = (
        await service.inline_outputs(grid, principal, executions, outputs, inline, after)
        if inline
        else {}
    )
    data = [convert.batch_item(e, outputs.get(e.id), contents) for e in executions]
    return schemas.BatchItemsPublic(
        batch=convert.batch(batch), data=data, next_changed_after=following
    )


@router.post("/{batch_id}/cancel")
async def cancel(batch_id: str, grid: GridDep, principal: CurrentPrincipal) -> schemas.BatchPublic:
    return convert.batch(await service.cancel_batch(grid, principal, batch_id))


@router.post("/{batch_id}/retry")
async def retry(
    batch_id: str, body: schemas.BatchRetry, grid: GridDep, principal: CurrentPrincipal
) -> list[schemas.ExecutionPublic]:
    await limits.before_submit(grid, principal)
    made = await service.retry_batch(
        grid, principal, batch_id, failed_only=body.failed_only, inputs=body.inputs
    )
    return [convert.execution(e) for e in made]
