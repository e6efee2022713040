"""Following a batch by its changes: every insert and update stamps the row, and a follower that
passes ``changed_after`` gets only the items changed since (both databases)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from tests.integration.store.conftest import ADMIN_KEY
from tests.integration.store.helpers import upload

from rgrid import domain, schemas, store
from rgrid.domain import ExecutionState
from rgrid.services import Grid, events
from rgrid.services import accounts as account_service
from rgrid.services import batches as service
from rgrid.services import executions as execution_service
from rgrid.store import batches as batch_repo
from rgrid.store import executions as repo


async def test_a_follower_gets_only_the_items_that_changed(grid: Grid) -> None:
    admin = await account_service.authenticate(grid, ADMIN_KEY)
    script = await upload(grid, admin, b"import sys; print(sys.argv[1])\n")
    items = []
    for name in ("a.csv", "b.csv", "c.csv"):
        sha = await upload(grid, admin, name.encode())
        file = schemas.FileIn(path=f"_inputs/{name}", digest=sha, size=len(name))
        items.append(schemas.BatchItemIn(input=name, args=[file.path], files=[file]))
    spec = schemas.BatchCreate(
        script="main.py",
        files=[schemas.FileIn(path="main.py", digest=script, size=31)],
        items=items,
        parallel=2,
    )
    batch = await service.submit_batch(grid, admin, spec)

    _, everything, following = await service.batch_changes(grid, admin, batch.id, None)
    assert [e.batch_input for e in everything] == ["a.csv", "b.csv", "c.csv"]
    assert following < datetime.now(UTC) - service.CHANGES_LAG + timedelta(seconds=1)

    submitted = datetime.now(UTC)
    await asyncio.sleep(0.01)
    async with store.transaction(grid.sessions) as session:  # a claim is one UPDATE statement
        claimed = await repo.claim_next(session, worker="w:1", now=submitted, lease_s=30)
    assert claimed is not None and claimed.batch_input == "a.csv"
    async with store.transaction(grid.sessions) as session:
        changed = await batch_repo.current_items(session, batch.id, changed_after=submitted)
    assert [(e.batch_input, e.state) for e in changed] == [("a.csv", ExecutionState.RUNNING)]

    claimed_at = datetime.now(UTC)
    await asyncio.sleep(0.01)
    third = next(e for e in everything if e.batch_input == "c.csv")
    await execution_service.cancel(grid, admin, third.id)  # an ORM update
    async with store.transaction(grid.sessions) as session:
        changed = await batch_repo.current_items(session, batch.id, changed_after=claimed_at)
    assert [(e.batch_input, e.state) for e in changed] == [("c.csv", ExecutionState.CANCELLED)]


async def test_a_worker_claims_only_what_its_pythons_can_run(grid: Grid) -> None:
    """A Ray node claims executions asking for no particular Python or for one it offers: an
    execution it cannot run stays queued for a node that can."""
    from sqlalchemy import update

    from rgrid.store.models import ExecutionRow

    admin = await account_service.authenticate(grid, ADMIN_KEY)
    batch = await _three_items(grid, admin)
    _, items, _ = await service.batch_changes(grid, admin, batch.id, None)
    wanted = {"a": "3.12", "b": "3.11.7", "c": None}  # b: a retry records the full version
    async with store.transaction(grid.sessions) as session:
        for item in items:
            await session.execute(
                update(ExecutionRow)
                .where(ExecutionRow.id == item.id)
                .values(python_version=wanted[str(item.batch_input)])
            )

    async def claim(pythons: frozenset[str]) -> str | None:
        async with store.transaction(grid.sessions) as session:
            row = await repo.claim_next(
                session, worker="ray:n", now=datetime.now(UTC), lease_s=30, pythons=pythons
            )
        return row.batch_input if row else None

    assert await claim(frozenset({"3.11"})) == "b"
    assert await claim(frozenset({"3.11"})) == "c"
    assert await claim(frozenset({"3.11"})) is None  # a waits: it asks for 3.12
    assert await claim(frozenset({"3.12", "3.11"})) == "a"


async def test_a_waiting_follower_hears_the_batch_end_at_once(
    grid: Grid, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``wait_s``: an unfinished batch's answer comes after the wait, with its changes; once
    every item ended, at once. The store's re-read after ``events.MAX_WAIT_S`` is put out of
    reach here, so only the notifications of the items' ends can answer early."""
    monkeypatch.setattr(events, "MAX_WAIT_S", 60.0)
    admin = await account_service.authenticate(grid, ADMIN_KEY)
    batch = await _three_items(grid, admin)

    started = time.monotonic()
    unfinished, items, _ = await service.batch_changes(grid, admin, batch.id, None, wait_s=0.3)
    assert 0.3 <= time.monotonic() - started < 5
    assert not unfinished.done and len(items) == 3

    async def cancel_all() -> None:
        await asyncio.sleep(0.2)  # the follower waits by then
        for item in items:
            await execution_service.cancel(grid, admin, item.id)

    cancelling = asyncio.create_task(cancel_all())
    started = time.monotonic()
    ended, changed, _ = await service.batch_changes(grid, admin, batch.id, None, wait_s=30)
    waited = time.monotonic() - started
    await cancelling
    assert ended.done and ended.counts == {"cancelled": 3}
    assert sorted(e.state for e in changed) == [ExecutionState.CANCELLED] * 3
    assert 0.2 <= waited < 10  # not the 30 s asked: the third cancel ended the wait

    started = time.monotonic()  # an ended batch is answered at once, whatever the wait
    again, _, _ = await service.batch_changes(grid, admin, batch.id, None, wait_s=30)
    assert again.done and time.monotonic() - started < 5


async def _three_items(grid: Grid, admin: domain.Principal) -> domain.Batch:
    """A batch of three items a, b and c that print 1, all three at once."""
    script = await upload(grid, admin, b"print(1)\n")
    spec = schemas.BatchCreate(
        script="main.py",
        files=[schemas.FileIn(path="main.py", digest=script, size=9)],
        items=[schemas.BatchItemIn(input=name, args=[], files=[]) for name in ("a", "b", "c")],
        parallel=3,
    )
    return await service.submit_batch(grid, admin, spec)
