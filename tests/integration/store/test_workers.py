"""Workers are data (issue 15): a worker's record — slots, price, billing period, heartbeat —
is what billing reads, on SQLite and PostgreSQL. An execution run by a worker priced 3.6 €/h
with 2 slots costs its run time at that price, whatever the server's own settings say; its
billing periods are closed at that price; a worker that stops heartbeating is marked lost."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from tests.integration.store.conftest import ADMIN_KEY
from tests.integration.store.helpers import bare_spec, submit_script

from rgrid import domain, store
from rgrid.domain import ExecutionState
from rgrid.money import slot_cost
from rgrid.services import Grid, billing, utcnow, workers
from rgrid.services import accounts as account_service
from rgrid.services import executions as service
from rgrid.services.outcomes import record_outcome
from rgrid.store import billing as billing_repo
from rgrid.store import executions as repo

PRICE = 3_600_000  # €3.60 an hour: 1 micro a millisecond for its 2 slots together


def worker(worker_id: str, now: object, **fields: object) -> domain.Worker:
    base = domain.Worker(
        id=worker_id,
        node="node-a",
        executor="local",
        slots=2,
        hourly_price_micros=PRICE,
        billing_period_s=60.0,
        started_at=now,  # type: ignore[arg-type]
        heartbeat_at=now,  # type: ignore[arg-type]
        state="active",
    )
    return dataclasses.replace(base, **fields)  # type: ignore[arg-type]


async def test_a_run_is_priced_as_its_worker_record_says(grid: Grid) -> None:
    assert grid.settings.hourly_price_micros != PRICE  # the settings would give another cost
    now = utcnow()
    await workers.register(grid, worker("node-a:7", now - timedelta(minutes=5)))
    admin = await account_service.authenticate(grid, ADMIN_KEY)
    made = await submit_script(grid, admin, "print(1)")
    async with store.transaction(grid.sessions) as session:
        row = await repo.claim_next(session, worker="node-a:7", now=utcnow(), lease_s=60)
        assert row is not None and row.id == made.id
        started = row.started_at
        assert started is not None
    spec = bare_spec(made.id, admin.account.id, 1)

    running = await service.get(grid, admin, made.id)  # the provisional cost, while it runs
    assert await record_outcome(grid, "node-a:7", spec, domain.Outcome(ExecutionState.SUCCEEDED, 0))

    done = await service.get(grid, admin, made.id)
    assert done.finished_at is not None and done.cost_micros is not None
    run_us = (done.finished_at - started) // timedelta(microseconds=1)
    assert done.cost_micros == slot_cost(run_us, PRICE, 2)
    assert running.cost_micros is not None and 0 <= running.cost_micros <= done.cost_micros

    closed = await billing.close_periods(grid, "node-a:7", now - timedelta(minutes=5), utcnow())
    assert closed >= 4  # 60 s periods since it started
    async with store.transaction(grid.sessions) as session:
        periods = [p for p in await billing_repo.periods(session) if p.worker == "node-a:7"]
    assert periods and {p.price_micros for p in periods} == {PRICE // 60}  # a minute's price


async def test_workers_list_busy_slots_and_a_silent_worker_is_lost(grid: Grid) -> None:
    now = utcnow()
    await workers.register(grid, worker("node-a:1", now))
    await workers.register(grid, worker("node-b:2", now - timedelta(hours=1), slots=8))
    admin = await account_service.authenticate(grid, ADMIN_KEY)
    await submit_script(grid, admin, "print(1)")
    async with store.transaction(grid.sessions) as session:
        assert await repo.claim_next(session, worker="node-a:1", now=utcnow(), lease_s=60)

    listed = {w.id: (w.slots, busy, w.state) for w, busy in await workers.listing(grid)}
    assert listed == {"node-a:1": (2, 1, "active"), "node-b:2": (8, 0, "active")}

    lost = await workers.mark_stale(grid, utcnow())

    assert lost == ["node-b:2"]
    assert [w.id for w, _ in await workers.listing(grid)] == ["node-a:1"]
    await workers.stopped(grid, "node-a:1")
    assert await workers.listing(grid) == []
