"""Workers as data (SPEC §9, §11): each process that runs executions registers itself with its
slots and price, heartbeats while it runs and says goodbye when it stops. Billing, ``/workers``,
``/metrics`` and recovery read these records, never the server's own settings."""

from __future__ import annotations

from datetime import datetime, timedelta

from rgrid import domain, store
from rgrid.sandbox import detect
from rgrid.services import Grid, utcnow
from rgrid.settings import ServerSettings
from rgrid.store import workers as repo

#: a worker whose heartbeat is older than this many leases is marked lost
STALE_LEASES = 3


def local(grid: Grid, worker_id: str, executor: str, slots: int, now: datetime) -> domain.Worker:
    """The record of this server's own worker: the host's slots at the configured price."""
    settings = grid.settings
    return domain.Worker(
        id=worker_id,
        node=settings.worker_name,
        executor=executor,
        slots=slots,
        hourly_price_micros=settings.hourly_price_micros,
        billing_period_s=settings.billing_period_s,
        started_at=now,
        heartbeat_at=now,
        state=repo.ACTIVE,
        sandbox=detect().strength,
        pythons=tuple(f"python{v}" for v in grid.pythons),
    )


def pricing(worker: domain.Worker | None, settings: ServerSettings) -> tuple[int, int]:
    """(hourly price in micros, slots) of a worker; an execution recorded before workers were
    (no record) is priced as the grid's own settings say."""
    if worker is None:
        return settings.hourly_price_micros, settings.slots
    return worker.hourly_price_micros, worker.slots


async def register(grid: Grid, worker: domain.Worker) -> None:
    async with store.transaction(grid.sessions) as session:
        await repo.register(session, worker)


async def seen(grid: Grid, workers: list[domain.Worker]) -> None:
    """Put an executor's own workers (Ray nodes) on record, or renew their heartbeat; a node
    seen again keeps the start of its billing periods."""
    async with store.transaction(grid.sessions) as session:
        for worker in workers:
            await repo.register(session, worker, keep_started=True)


async def heartbeat(grid: Grid, worker_id: str, now: datetime) -> None:
    async with store.transaction(grid.sessions) as session:
        await repo.heartbeat(session, worker_id, now)


async def stopped(grid: Grid, worker_id: str) -> None:
    async with store.transaction(grid.sessions) as session:
        await repo.set_state(session, [worker_id], repo.STOPPED)


async def mark_lost(grid: Grid, worker_ids: list[str]) -> None:
    async with store.transaction(grid.sessions) as session:
        await repo.set_state(session, worker_ids, repo.LOST)


async def mark_stale(grid: Grid, now: datetime) -> list[str]:
    """Mark lost the active workers that stopped heartbeating; their ids."""
    before = now - timedelta(seconds=grid.settings.lease_s * STALE_LEASES)
    async with store.transaction(grid.sessions) as session:
        gone = [worker.id for worker in await repo.stale(session, before)]
        await repo.set_state(session, gone, repo.LOST)
    return gone


#: how long a node the autoscaler terminated (or found dead) is still listed
ENDED_SHOWN = timedelta(hours=1)


async def listing(grid: Grid) -> list[tuple[domain.Worker, int]]:
    """The workers that are there (active; an autoscaled node also provisioning or
    draining) and the nodes that ended within ``ENDED_SHOWN``, each with how many executions
    it runs now."""
    async with store.transaction(grid.sessions) as session:
        listed = await repo.listed(session, repo.LIVE, ended_since=utcnow() - ENDED_SHOWN)
        busy = await repo.busy(session)
    return [(worker, busy.get(worker.id, 0)) for worker in listed]


def period_end(worker: domain.Worker, now: datetime) -> datetime | None:
    """The end of the worker's current billing period (periods run back to back from its
    start); None for one that ended."""
    if worker.ended_at is not None or worker.state not in repo.LIVE:
        return None
    period = timedelta(seconds=worker.billing_period_s)
    return worker.started_at + (max(now - worker.started_at, timedelta(0)) // period + 1) * period


async def of(grid: Grid, worker_ids: list[str]) -> dict[str, domain.Worker]:
    async with store.transaction(grid.sessions) as session:
        return await repo.by_ids(session, worker_ids)


async def pythons(grid: Grid) -> list[str]:
    """The Python runtimes the active workers offer ("python3.11"), this server's own while
    none is on record yet."""
    offered = {
        python
        for worker, _ in await listing(grid)
        if worker.state == repo.ACTIVE
        for python in worker.pythons
    }
    return sorted(offered or {f"python{v}" for v in grid.pythons})
