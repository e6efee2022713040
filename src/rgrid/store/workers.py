"""Workers (``domain.Worker``): registered when they start, heartbeating while they run."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from rgrid import domain
from rgrid.domain import ExecutionState
from rgrid.store import dialect_insert
from rgrid.store.models import ExecutionRow, WorkerRow

ACTIVE = "active"
STOPPED = "stopped"
LOST = "lost"
#: an autoscaled node's states besides active (``autoscaler.policy.NodeState``)
PROVISIONING = "provisioning"
DRAINING = "draining"
TERMINATED = "terminated"
DEAD = "dead"
#: the states of a worker that is (or is about to be) there
LIVE = (PROVISIONING, ACTIVE, DRAINING)


def _domain(row: WorkerRow) -> domain.Worker:
    return domain.Worker(
        id=row.id,
        node=row.node,
        executor=row.executor,
        slots=row.slots,
        hourly_price_micros=row.hourly_price_micros,
        billing_period_s=row.billing_period_s,
        started_at=row.started_at,
        heartbeat_at=row.heartbeat_at,
        state=row.state,
        sandbox=row.sandbox,
        pythons=tuple(row.pythons or ()),
        provider=row.provider,
        provider_id=row.provider_id,
        kind=row.kind,
        ended_at=row.ended_at,
    )


async def register(
    session: AsyncSession, worker: domain.Worker, *, keep_started: bool = False
) -> None:
    """Record a starting worker (the same id again, e.g. a restarted process that got the
    same pid: its record is replaced). ``keep_started``: a worker seen again (a Ray node
    after a server restart) keeps the start its billing periods run from."""
    values = {
        "id": worker.id,
        "node": worker.node,
        "executor": worker.executor,
        "slots": worker.slots,
        "hourly_price_micros": worker.hourly_price_micros,
        "billing_period_s": worker.billing_period_s,
        "started_at": worker.started_at,
        "heartbeat_at": worker.heartbeat_at,
        "state": worker.state,
        "sandbox": worker.sandbox,
        "pythons": list(worker.pythons),
        "provider": worker.provider,
        "provider_id": worker.provider_id,
        "kind": worker.kind,
        "ended_at": worker.ended_at,
    }
    statement = dialect_insert(session)(WorkerRow).values(**values)
    kept = {"id", "started_at"} if keep_started else {"id"}
    update_values = {k: v for k, v in values.items() if k not in kept}
    await session.execute(
        statement.on_conflict_do_update(index_elements=["id"], set_=update_values)
    )


async def heartbeat(session: AsyncSession, worker_id: str, now: datetime) -> None:
    await session.execute(
        update(WorkerRow).where(WorkerRow.id == worker_id).values(heartbeat_at=now, state=ACTIVE)
    )


async def set_state(session: AsyncSession, worker_ids: Sequence[str], state: str) -> None:
    if worker_ids:
        await session.execute(
            update(WorkerRow).where(WorkerRow.id.in_(list(worker_ids))).values(state=state)
        )


async def get(session: AsyncSession, worker_id: str) -> domain.Worker | None:
    row = await session.get(WorkerRow, worker_id)
    return _domain(row) if row is not None else None


async def by_ids(session: AsyncSession, worker_ids: Sequence[str]) -> dict[str, domain.Worker]:
    if not worker_ids:
        return {}
    rows = await session.scalars(select(WorkerRow).where(WorkerRow.id.in_(sorted(worker_ids))))
    return {row.id: _domain(row) for row in rows}


async def listed(
    session: AsyncSession, states: Sequence[str] = (ACTIVE,), *, ended_since: datetime | None = None
) -> list[domain.Worker]:
    """The workers in ``states``, and those that ended at ``ended_since`` or later."""
    wanted: ColumnElement[bool] = WorkerRow.state.in_(list(states))
    if ended_since is not None:
        wanted = or_(wanted, WorkerRow.ended_at >= ended_since)
    rows = await session.scalars(select(WorkerRow).where(wanted).order_by(WorkerRow.id))
    return [_domain(row) for row in rows]


async def of_provider(
    session: AsyncSession, provider: str, ended_since: datetime
) -> list[domain.Worker]:
    """The nodes an autoscaler with this provider made that are live or ended at
    ``ended_since`` or later, oldest first."""
    rows = await session.scalars(
        select(WorkerRow)
        .where(
            WorkerRow.provider == provider,
            or_(WorkerRow.state.in_(LIVE), WorkerRow.ended_at >= ended_since),
        )
        .order_by(WorkerRow.started_at)
    )
    return [_domain(row) for row in rows]


async def stale(session: AsyncSession, before: datetime) -> list[domain.Worker]:
    """Active workers whose last heartbeat is older than ``before``."""
    rows = await session.scalars(
        select(WorkerRow).where(
            WorkerRow.state == ACTIVE,
            WorkerRow.heartbeat_at < before,
            WorkerRow.provider.is_(None),  # an autoscaled node's state is the autoscaler's
        )
    )
    return [_domain(row) for row in rows]


async def busy(session: AsyncSession) -> dict[str, int]:
    """Running executions per worker."""
    rows = await session.execute(
        select(ExecutionRow.worker, func.count())
        .where(ExecutionRow.state == ExecutionState.RUNNING.value)
        .group_by(ExecutionRow.worker)
    )
    return {str(worker): int(count) for worker, count in rows if worker is not None}
