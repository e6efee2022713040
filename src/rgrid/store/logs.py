"""Log lines: appended in batches by the runner, read in sequence order by followers."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from rgrid import domain
from rgrid.store.models import LogLineRow


async def append(session: AsyncSession, execution_id: str, lines: Sequence[domain.LogLine]) -> None:
    if lines:
        await session.execute(
            insert(LogLineRow),
            [
                {
                    "execution_id": execution_id,
                    "seq": line.seq,
                    "attempt": line.attempt,
                    "stream": line.stream.value,
                    "ts": line.ts,
                    "text": line.text,
                }
                for line in lines
            ],
        )


async def read(
    session: AsyncSession, execution_id: str, *, after: int, limit: int
) -> list[domain.LogLine]:
    rows = await session.scalars(
        select(LogLineRow)
        .where(LogLineRow.execution_id == execution_id, LogLineRow.seq > after)
        .order_by(LogLineRow.seq)
        .limit(limit)
    )
    return [
        domain.LogLine(
            seq=row.seq,
            attempt=row.attempt,
            stream=domain.Stream(row.stream),
            ts=row.ts,
            text=row.text,
        )
        for row in rows
    ]
