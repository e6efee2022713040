"""Every state an execution reaches is allowed by the transition table (issue 15): random
sequences of the grid's operations — submit, claim, renew, expire, finish, cancel, retry — run
against the store on SQLite and PostgreSQL, and after each one every execution's state is
either the one before or a move ``domain.TRANSITIONS`` allows. Stale workers are among the
actors: their writes must change nothing."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest
from tests.integration.store.conftest import ADMIN_KEY
from tests.integration.store.helpers import bare_spec, submit_script

from rgrid import domain, errors, store
from rgrid.domain import ExecutionState, FailureClass
from rgrid.services import Grid, utcnow
from rgrid.services import accounts as account_service
from rgrid.services import executions as service
from rgrid.services.outcomes import record_outcome
from rgrid.services.recovery import recover_expired
from rgrid.store import executions as repo

SEQUENCES = 12
STEPS = 30
WORKERS = ("node-a:1", "node-b:2")
OUTCOMES = [
    domain.Outcome(ExecutionState.SUCCEEDED, 0, None),
    domain.Outcome(ExecutionState.FAILED, 3, FailureClass.SCRIPT_ERROR, cause="exit 3"),
    domain.Outcome(ExecutionState.FAILED, 1, FailureClass.INFRASTRUCTURE, cause="disk"),
    domain.Outcome(ExecutionState.CANCELLED, 130, None, cause="cancelled"),
]


class World:
    """The grid's operations, as different actors perform them, on a clock of its own."""

    def __init__(self, grid: Grid, principal: domain.Principal, rng: random.Random) -> None:
        self.grid, self.principal, self.rng = grid, principal, rng
        self.now = utcnow()
        self.ids: list[str] = []
        #: every attempt ever claimed, as (execution, worker, attempt): stale ones included
        self.claims: list[tuple[str, str, int]] = []

    async def submit(self) -> str:
        made = await submit_script(self.grid, self.principal, "print(1)", max_retries=1)
        self.ids.append(made.id)
        return f"submit {made.id}"

    async def claim(self) -> str:
        worker = self.rng.choice(WORKERS)
        async with store.transaction(self.grid.sessions) as session:
            row = await repo.claim_next(session, worker=worker, now=self.now, lease_s=30)
            claimed = None if row is None else (row.id, worker, row.attempt)
        if claimed is not None:
            self.claims.append(claimed)
        return f"claim by {worker}: {claimed}"

    async def renew(self) -> str:
        if not self.claims:
            return "renew: nothing claimed"
        execution_id, worker, _ = self.rng.choice(self.claims)
        async with store.transaction(self.grid.sessions) as session:
            until = self.now + timedelta(seconds=30)
            answer = await repo.renew_lease(session, execution_id, worker, until)
        return f"renew {execution_id} by {worker}: {answer}"

    async def expire(self) -> str:
        self.now += timedelta(minutes=5)  # past every lease and every retry's backoff
        settled = await recover_expired(self.grid, "recovery:0", self.now)
        return f"expire: {settled} settled"

    async def finish(self) -> str:
        if not self.claims:
            return "finish: nothing claimed"
        execution_id, worker, attempt = self.rng.choice(self.claims)
        outcome = self.rng.choice(OUTCOMES)
        spec = bare_spec(execution_id, self.principal.account.id, attempt)
        recorded = await record_outcome(self.grid, worker, spec, outcome)
        return f"finish {execution_id} #{attempt} by {worker} as {outcome.state}: {recorded}"

    async def cancel(self) -> str:
        execution_id = self.rng.choice(self.ids)
        try:
            await service.cancel(self.grid, self.principal, execution_id)
        except errors.Conflict:
            return f"cancel {execution_id}: already ended"
        return f"cancel {execution_id}"

    async def retry(self) -> str:
        execution_id = self.rng.choice(self.ids)
        try:
            made = await service.retry(self.grid, self.principal, execution_id, force=True)
        except errors.Conflict:
            return f"retry {execution_id}: still waiting or running"
        self.ids.append(made.id)
        return f"retry {execution_id} as {made.id}"

    async def states(self) -> dict[str, tuple[ExecutionState, str | None, datetime | None]]:
        async with store.transaction(self.grid.sessions) as session:
            rows = [await repo.get_row(session, execution_id) for execution_id in self.ids]
        return {
            row.id: (ExecutionState(row.state), row.worker, row.finished_at)
            for row in rows
            if row is not None
        }


@pytest.mark.parametrize("seed", range(SEQUENCES))
async def test_every_reached_state_is_allowed_by_the_table(grid: Grid, seed: int) -> None:
    principal = await account_service.authenticate(grid, ADMIN_KEY)
    rng = random.Random(seed)
    world = World(grid, principal, rng)
    operations = [
        world.claim,
        world.claim,
        world.renew,
        world.expire,
        world.finish,
        world.finish,
        world.cancel,
        world.retry,
        world.submit,
    ]
    trace = [await world.submit()]
    before = await world.states()
    for _ in range(STEPS):
        trace.append(await rng.choice(operations)())
        after = await world.states()
        for execution_id, (state, worker, finished_at) in after.items():
            old = before.get(execution_id)
            where = f"seed {seed}, {execution_id}; trace:\n" + "\n".join(trace)
            if old is None:
                assert state in domain.INITIAL_STATES, where
            else:
                assert state is old[0] or domain.can_transition(old[0], state), (
                    f"{old[0]} → {state}: {where}"
                )
            if state is ExecutionState.RUNNING:
                assert worker is not None, where
            elif state in domain.WAITING_STATES:
                assert worker is None, where
            assert state.terminal == (finished_at is not None), where
        before = after
