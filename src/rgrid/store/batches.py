"""Batches: the batch row, its items' counts, and bulk inserts of its executions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from rgrid import domain, errors
from rgrid.store import starts_with
from rgrid.store.executions import to_domain
from rgrid.store.models import ArtifactRow, BatchRow, ExecutionMetadataRow, ExecutionRow

__all__ = ["BatchRow", "current_items", "insert_items", "resolve", "supersede", "to_batch"]


async def _counts(session: AsyncSession, batch_id: str) -> dict[str, int]:
    rows = await session.execute(
        select(ExecutionRow.state, func.count())
        .where(ExecutionRow.batch_id == batch_id, ExecutionRow.superseded.is_(False))
        .group_by(ExecutionRow.state)
    )
    return {str(state): int(count) for state, count in rows}


async def _cost(session: AsyncSession, batch_id: str) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(ExecutionRow.cost_micros), 0)).where(
            ExecutionRow.batch_id == batch_id
        )
    )
    return int(total or 0)


async def to_batch(session: AsyncSession, row: BatchRow) -> domain.Batch:
    return domain.Batch(
        id=row.id,
        account_id=row.account_id,
        script=row.script,
        parallel=row.parallel,
        total=row.total,
        created_at=row.created_at,
        counts=await _counts(session, row.id),
        cost_micros=await _cost(session, row.id),
    )


async def resolve(session: AsyncSession, account_id: str, id_or_prefix: str) -> BatchRow:
    """The batch with this id or unique prefix in this account (``NotFound``/``AmbiguousId``)."""
    scoped = select(BatchRow).where(BatchRow.account_id == account_id)
    row = await session.scalar(scoped.where(BatchRow.id == id_or_prefix))
    if row is None:
        rows = (
            await session.scalars(scoped.where(starts_with(BatchRow.id, id_or_prefix)).limit(2))
        ).all()
        if len(rows) > 1:
            raise errors.AmbiguousId(f"{id_or_prefix!r} matches several batches")
        row = rows[0] if rows else None
    if row is None:
        raise errors.NotFound(f"no batch {id_or_prefix!r}", hint="`rgrid list` shows your work")
    return row


async def by_idempotency_key(session: AsyncSession, account_id: str, key: str) -> BatchRow | None:
    return await session.scalar(
        select(BatchRow).where(BatchRow.account_id == account_id, BatchRow.idempotency_key == key)
    )


async def insert_items(
    session: AsyncSession,
    executions: Sequence[dict[str, Any]],
    artifacts: Sequence[dict[str, Any]],
    metadata: Sequence[dict[str, Any]],
) -> None:
    """Many executions in a few statements (a batch may have 10,000 items)."""
    for table, rows in (
        (ExecutionRow, executions),
        (ArtifactRow, artifacts),
        (ExecutionMetadataRow, metadata),
    ):
        for start in range(0, len(rows), 2000):
            part = rows[start : start + 2000]
            if part:
                await session.execute(insert(table), part)


async def current_items(
    session: AsyncSession, batch_id: str, changed_after: datetime | None = None
) -> list[domain.Execution]:
    """Its items' current executions (a retried item's newest), in item order; with
    ``changed_after``, only those whose row changed after then."""
    if changed_after is None:
        rows = await session.execute(_ITEMS, {"batch_id": batch_id})
    else:
        bound = {"batch_id": batch_id, "changed_after": changed_after}
        rows = await session.execute(_ITEMS_CHANGED, bound)
    return [to_domain(row, {}) for row in rows]


# Built once, and plain rows rather than ORM objects: a follower's every poll reads the items
# changed in the last seconds (``services.batches.CHANGES_LAG``), many of them each time.
_ITEMS = (
    select(*cast(Table, ExecutionRow.__table__).c)
    .where(ExecutionRow.batch_id == bindparam("batch_id"), ExecutionRow.superseded.is_(False))
    .order_by(ExecutionRow.batch_index)
)
_ITEMS_CHANGED = _ITEMS.where(
    ExecutionRow.updated_at > bindparam("changed_after", type_=ExecutionRow.updated_at.type)
)


async def supersede(session: AsyncSession, execution_ids: Sequence[str]) -> None:
    if execution_ids:
        await session.execute(
            update(ExecutionRow).where(ExecutionRow.id.in_(execution_ids)).values(superseded=True)
        )
