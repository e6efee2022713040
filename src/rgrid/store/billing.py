"""Runs on workers, closed billing periods, and executions' shares of them (SPEC §11)."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from rgrid.domain import ExecutionState
from rgrid.store.models import BillingPeriodRow, CostShareRow, ExecutionRow, RunRow

Span = tuple[str, datetime, datetime | None]  # execution, run start, run end (None: running)


async def record_run(
    session: AsyncSession,
    execution_id: str,
    attempt: int,
    worker: str,
    started_at: datetime,
    ended_at: datetime,
) -> None:
    # one statement; an attempt settled twice (recovery racing a late finish) keeps one row
    row = {
        "execution_id": execution_id,
        "attempt": attempt,
        "worker": worker,
        "started_at": started_at,
        "ended_at": ended_at,
    }
    await session.execute(_run_upsert(session.get_bind().dialect.name), row)


@functools.lru_cache(maxsize=2)
def _run_upsert(dialect: str) -> Any:
    """``record_run``'s statement, built once per database kind, its values bound per call (on
    the table, not the ORM class: the ORM's machinery cost more than the insert)."""
    insert_of = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert_of(cast(Table, RunRow.__table__))
    span = ("worker", "started_at", "ended_at")
    return statement.on_conflict_do_update(
        index_elements=["execution_id", "attempt"],
        set_={name: statement.excluded[name] for name in span},
    )


async def last_closed_end(session: AsyncSession, worker: str) -> datetime | None:
    end: datetime | None = await session.scalar(
        select(func.max(BillingPeriodRow.end)).where(BillingPeriodRow.worker == worker)
    )
    return end


async def spans(session: AsyncSession, worker: str, start: datetime, end: datetime) -> list[Span]:
    """The runs on ``worker`` that overlap [start, end), and its executions still running."""
    ended = await session.execute(
        select(RunRow.execution_id, RunRow.started_at, RunRow.ended_at).where(
            RunRow.worker == worker, RunRow.started_at < end, RunRow.ended_at > start
        )
    )
    running = await session.execute(
        select(ExecutionRow.id, ExecutionRow.started_at).where(
            ExecutionRow.worker == worker,
            ExecutionRow.state == ExecutionState.RUNNING.value,
            ExecutionRow.started_at < end,
        )
    )
    found: list[Span] = [(str(i), s, e) for i, s, e in ended]
    found += [(str(i), s, None) for i, s in running if s is not None]
    return found


async def close_period(
    session: AsyncSession,
    worker: str,
    start: datetime,
    end: datetime,
    price_micros: int,
    shares: Mapping[str, tuple[int, int]],
) -> None:
    """Record a closed period and each execution's (run µs, micros) share of it."""
    charged = sum(micros for _, micros in shares.values())
    session.add(
        BillingPeriodRow(
            worker=worker,
            start=start,
            end=end,
            price_micros=price_micros,
            idle_micros=price_micros - charged,
        )
    )
    session.add_all(
        CostShareRow(
            worker=worker, period_start=start, execution_id=key, run_us=run_us, micros=micros
        )
        for key, (run_us, micros) in shares.items()
    )
    await session.flush()


async def finalize(
    session: AsyncSession, execution_ids: Sequence[str], closed_until: datetime
) -> int:
    """Executions that ended, with every run inside closed periods, get their final cost: the
    sum of their shares. Returns how many became final."""
    done = 0
    for start in range(0, len(execution_ids), 500):
        chunk = execution_ids[start : start + 500]
        ends = await session.execute(
            select(RunRow.execution_id, func.max(RunRow.ended_at))
            .where(RunRow.execution_id.in_(chunk))
            .group_by(RunRow.execution_id)
        )
        last_end = dict(ends.tuples().all())  # a Result has keys(): dict() needs the rows
        sums = await session.execute(
            select(CostShareRow.execution_id, func.sum(CostShareRow.micros))
            .where(CostShareRow.execution_id.in_(chunk))
            .group_by(CostShareRow.execution_id)
        )
        shares = dict(sums.tuples().all())
        rows = await session.scalars(select(ExecutionRow).where(ExecutionRow.id.in_(chunk)))
        for row in rows:
            ended = last_end.get(row.id)
            if row.cost_final or not ExecutionState(row.state).terminal:
                continue
            if ended is None or ended > closed_until:
                continue
            row.cost_micros = int(shares.get(row.id) or 0)
            row.cost_final = True
            done += 1
    return done


async def periods(session: AsyncSession) -> list[BillingPeriodRow]:
    rows = await session.scalars(select(BillingPeriodRow).order_by(BillingPeriodRow.start))
    return list(rows)


async def shares_of(session: AsyncSession) -> list[CostShareRow]:
    rows = await session.scalars(select(CostShareRow).order_by(CostShareRow.period_start))
    return list(rows)


async def idle_between(
    session: AsyncSession, since: datetime | None, until: datetime | None
) -> tuple[int, int]:
    """Closed periods starting in [since, until) with idle cost: how many, and their sum."""
    query = select(func.count(), func.coalesce(func.sum(BillingPeriodRow.idle_micros), 0)).where(
        BillingPeriodRow.idle_micros > 0
    )
    if since is not None:
        query = query.where(BillingPeriodRow.start >= since)
    if until is not None:
        query = query.where(BillingPeriodRow.start < until)
    count, micros = (await session.execute(query)).one()
    return int(count), int(micros)
