"""An account's spending limit, and what it spent since a moment."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rgrid.store.models import ExecutionRow, SpendingLimitRow


async def get(session: AsyncSession, account_id: str) -> SpendingLimitRow | None:
    return await session.get(SpendingLimitRow, account_id)


async def put(
    session: AsyncSession, account_id: str, limit_micros: int, period: str, now: datetime
) -> SpendingLimitRow:
    row = await session.get(SpendingLimitRow, account_id)
    if row is None:
        row = SpendingLimitRow(account_id=account_id, created_at=now)
        session.add(row)
    row.limit_micros, row.period = limit_micros, period
    await session.flush()
    return row


async def remove(session: AsyncSession, account_id: str) -> bool:
    result = await session.execute(
        delete(SpendingLimitRow).where(SpendingLimitRow.account_id == account_id)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def spent_since(session: AsyncSession, account_id: str, since: datetime) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(ExecutionRow.cost_micros), 0)).where(
            ExecutionRow.account_id == account_id, ExecutionRow.created_at >= since
        )
    )
    return int(total or 0)
