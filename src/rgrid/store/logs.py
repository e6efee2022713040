"""Log lines, stored in chunks: appended in batches by the runner, read in sequence order."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from rgrid import domain
from rgrid.store.models import LogChunkRow

_STREAMS = {stream.value: stream for stream in domain.Stream}
CHUNK_LINES = 1000


async def append(
    session: AsyncSession, execution_id: str, segments: Sequence[domain.LogSegment]
) -> None:
    """Store consecutive segments (sequence numbers without gaps) as chunk rows of about
    ``CHUNK_LINES`` lines, each of one attempt."""
    rows: list[dict[str, Any]] = []
    pending: list[domain.LogSegment] = []
    lines = 0
    for segment in segments:
        if pending and (segment.attempt != pending[0].attempt or lines >= CHUNK_LINES):
            rows.append(_row(execution_id, pending))
            pending, lines = [], 0
        pending.append(segment)
        lines += segment.line_count
    if pending:
        rows.append(_row(execution_id, pending))
    if rows:
        await session.execute(insert(LogChunkRow), rows)


def _row(execution_id: str, segments: list[domain.LogSegment]) -> dict[str, Any]:
    return {
        "execution_id": execution_id,
        "first_seq": segments[0].first_seq,
        "last_seq": segments[-1].last_seq,
        "attempt": segments[0].attempt,
        # a StrEnum member is a str to JSON
        "lines": [[seg.stream, seg.ts.timestamp(), seg.text] for seg in segments],
    }


async def read(
    session: AsyncSession,
    execution_id: str,
    *,
    after: int,
    limit: int,
    attempt: int | None = None,
) -> list[domain.LogLine]:
    """Up to ``limit`` lines with sequence numbers above ``after``, in order.

    First the chunk bounds alone, to pick just the chunks that cover ``limit`` lines; only
    those are loaded (decoding a chunk's thousands of lines is the expensive part).
    """
    bounds = select(LogChunkRow.first_seq, LogChunkRow.last_seq).where(
        LogChunkRow.execution_id == execution_id, LogChunkRow.last_seq > after
    )
    if attempt is not None:
        bounds = bounds.where(LogChunkRow.attempt == attempt)
    wanted: list[int] = []
    count = 0
    for first, last in await session.execute(bounds.order_by(LogChunkRow.first_seq)):
        wanted.append(first)
        count += last - max(first, after + 1) + 1
        if count >= limit:
            break
    if not wanted:
        return []
    chunks = await session.scalars(
        select(LogChunkRow)
        .where(LogChunkRow.execution_id == execution_id, LogChunkRow.first_seq.in_(wanted))
        .order_by(LogChunkRow.first_seq)
    )
    out: list[domain.LogLine] = []
    for chunk in chunks:
        seq = chunk.first_seq
        for stream, ts, text in chunk.lines:
            lines = domain.segment_lines(text)
            if seq + len(lines) - 1 <= after:
                seq += len(lines)
                continue
            kind, when = _STREAMS[stream], datetime.fromtimestamp(ts, UTC)
            for line in lines:
                if seq > after:
                    out.append(domain.LogLine(seq, chunk.attempt, kind, when, line))
                    if len(out) >= limit:
                        return out
                seq += 1
    return out
