"""Submitting, finding, listing, claiming and cancelling executions, on both databases."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from tests.integration.store.conftest import ADMIN_KEY
from tests.integration.store.helpers import submit_script, upload

from rgrid import digests, errors, schemas, store
from rgrid.domain import ExecutionState
from rgrid.services import Grid
from rgrid.services import accounts as account_service
from rgrid.services import executions as service
from rgrid.store import executions as repo
from rgrid.store.models import ExecutionRow


async def test_submit_needs_uploaded_blobs_and_safe_paths(grid: Grid) -> None:
    admin = await account_service.authenticate(grid, ADMIN_KEY)
    missing = schemas.ExecutionCreate(
        script="main.py",
        files=[schemas.FileIn(path="main.py", digest="blake3:" + "0" * 64, size=1)],
    )
    with pytest.raises(errors.InvalidRequest, match="not uploaded"):
        await service.submit(grid, admin, missing)
    sha = await upload(grid, admin, b"print(1)\n")
    for bad in ("../main.py", "/main.py", "a/../../main.py"):
        spec = schemas.ExecutionCreate(
            script=bad, files=[schemas.FileIn(path=bad, digest=sha, size=9)]
        )
        with pytest.raises(errors.UnsafePath):
            await service.submit(grid, admin, spec)
    # an absolute place needs a mounted directory holding it, which may not cover the system
    for roots in ([], ["/etc"], ["/"], ["/opt"]):
        spec = schemas.ExecutionCreate(
            script="/etc/main.py",
            files=[schemas.FileIn(path="/etc/main.py", digest=sha, size=9)],
            mount_roots=roots,
        )
        with pytest.raises(errors.UnsafePath):
            await service.submit(grid, admin, spec)
    bad_env = schemas.ExecutionCreate(
        script="main.py",
        files=[schemas.FileIn(path="main.py", digest=sha, size=9)],
        env={"A-B": "x"},
    )
    with pytest.raises(errors.InvalidRequest, match="environment variable"):
        await service.submit(grid, admin, bad_env)


async def test_idempotency_key_returns_the_first_submission(grid: Grid) -> None:
    admin = await account_service.authenticate(grid, ADMIN_KEY)
    first = await submit_script(grid, admin, "print(1)", idempotency_key="k1")
    again = await submit_script(grid, admin, "print(1)", idempotency_key="k1")
    assert again.id == first.id
    page = await service.list_executions(
        grid, admin, states=[], metadata={}, since=None, cursor=None, limit=10
    )
    assert [e.id for e in page] == [first.id]


async def test_env_values_are_encrypted_at_rest(grid: Grid) -> None:
    admin = await account_service.authenticate(grid, ADMIN_KEY)
    execution = await submit_script(grid, admin, "print(1)", env={"TOKEN": "s3cr3t-value"})
    assert execution.env_names == ("TOKEN",)
    async with store.transaction(grid.sessions) as session:
        row = await repo.get_row(session, execution.id)
    assert row is not None and "s3cr3t-value" not in row.env_ciphertext
    assert grid.secrets.open(row.env_ciphertext) == {"TOKEN": "s3cr3t-value"}


async def test_prefixes_scoping_and_ambiguity(grid: Grid) -> None:
    admin = await account_service.authenticate(grid, ADMIN_KEY)
    _, bob_key = await account_service.create_account(grid, admin, "bob", is_admin=False)
    bob = await account_service.authenticate(grid, bob_key)
    one = await submit_script(grid, admin, "print(1)")
    await submit_script(grid, admin, "print(2)")
    assert (await service.get(grid, admin, one.id[:12])).id == one.id
    with pytest.raises(errors.AmbiguousId):
        await service.get(grid, admin, "exec_")
    with pytest.raises(errors.NotFound):
        await service.get(grid, bob, one.id)  # another account's id looks like a missing one
    with pytest.raises(errors.NotFound):
        await service.get(grid, admin, "exec_zzzzzzzzzzzzzzzzz")
    with pytest.raises(errors.NotFound):
        await service.get(grid, admin, "exec%")  # LIKE wildcards are literal


async def test_list_filters_and_cursor_pages(grid: Grid) -> None:
    admin = await account_service.authenticate(grid, ADMIN_KEY)
    made = [
        await submit_script(grid, admin, f"print({i})", metadata={"project": "x" if i % 2 else "y"})
        for i in range(5)
    ]
    everything = await service.list_executions(
        grid, admin, states=[], metadata={}, since=None, cursor=None, limit=100
    )
    assert [e.id for e in everything] == [e.id for e in reversed(made)]
    xs = await service.list_executions(
        grid,
        admin,
        states=[ExecutionState.QUEUED],
        metadata={"project": "x"},
        since=None,
        cursor=None,
        limit=100,
    )
    assert {e.id for e in xs} == {made[1].id, made[3].id}
    first = await service.list_executions(
        grid, admin, states=[], metadata={}, since=None, cursor=None, limit=2
    )
    rest = await service.list_executions(
        grid,
        admin,
        states=[],
        metadata={},
        since=None,
        cursor=(first[-1].created_at, first[-1].id),
        limit=100,
    )
    assert [e.id for e in first + rest] == [e.id for e in everything]
    future = datetime.now(UTC) + timedelta(hours=1)
    assert not await service.list_executions(
        grid, admin, states=[], metadata={}, since=future, cursor=None, limit=100
    )


async def test_claiming_is_atomic_under_concurrency(grid: Grid) -> None:
    admin = await account_service.authenticate(grid, ADMIN_KEY)
    made = {(await submit_script(grid, admin, f"print({i})")).id for i in range(20)}

    async def claimer(name: str) -> list[str]:
        won: list[str] = []
        while True:
            async with store.transaction(grid.sessions) as session:
                row = await repo.claim_next(session, worker=name, now=datetime.now(UTC), lease_s=30)
            if row is None:
                return won
            won.append(row.id)

    results = await asyncio.gather(*(claimer(f"w{i}") for i in range(4)))
    claimed = [i for ids in results for i in ids]
    assert sorted(claimed) == sorted(made)  # every one claimed, none twice


async def test_cancel_queued_and_refuse_finished(grid: Grid) -> None:
    admin = await account_service.authenticate(grid, ADMIN_KEY)
    execution = await submit_script(grid, admin, "print(1)")
    cancelled = await service.cancel(grid, admin, execution.id)
    assert cancelled.state is ExecutionState.CANCELLED and cancelled.finished_at is not None
    with pytest.raises(errors.Conflict):
        await service.cancel(grid, admin, execution.id)


async def test_concurrent_uploads_of_the_same_content_all_succeed(grid: Grid) -> None:
    admin = await account_service.authenticate(grid, ADMIN_KEY)
    shas = await asyncio.gather(*(upload(grid, admin, b"same bytes") for _ in range(8)))
    assert len(set(shas)) == 1


async def test_a_thousand_items_two_engines_each_claimed_once(
    grid: Grid, engine: AsyncEngine
) -> None:
    """Two independent connection pools (as two server processes have) drain 1,000 queued
    executions: every one is claimed exactly once (FOR UPDATE SKIP LOCKED on PostgreSQL)."""
    admin = await account_service.authenticate(grid, ADMIN_KEY)
    template = await submit_script(grid, admin, "print(1)")
    now = datetime.now(UTC)
    async with store.transaction(grid.sessions) as session:
        source = await repo.get_row(session, template.id)
        assert source is not None
        source.state = ExecutionState.SUCCEEDED.value
        session.add_all(
            ExecutionRow(
                id=f"exec_bulk{i:05d}",
                account_id=source.account_id,
                state="queued",
                script="main.py",
                args=[],
                env_ciphertext="",
                env_names=[],
                timeout_s=60,
                memory_bytes=2**30,
                network=True,
                attempt=0,
                created_at=now,
                queued_at=now,
                last_seq=0,
                cancel_requested=False,
                requirements=[],
                dependency_source="none",
                packages=[],
                max_retries=2,
            )
            for i in range(1000)
        )
    second = store.make_engine(engine.url.render_as_string(hide_password=False))
    factories = [grid.sessions, store.session_factory(second)]

    async def claimer(name: str, factory: async_sessionmaker[AsyncSession]) -> list[str]:
        won: list[str] = []
        while True:
            async with store.transaction(factory) as session:
                row = await repo.claim_next(session, worker=name, now=datetime.now(UTC), lease_s=30)
            if row is None:
                return won
            won.append(row.id)

    try:
        results = await asyncio.gather(*(claimer(f"w{i}", factories[i % 2]) for i in range(4)))
    finally:
        await second.dispose()
    claimed = [i for ids in results for i in ids]
    assert len(claimed) == 1000 and len(set(claimed)) == 1000
    assert all(results)  # every claimer got work: they really competed


async def test_stdin_needs_its_blob_unless_empty_and_a_retry_keeps_it(grid: Grid) -> None:
    admin = await account_service.authenticate(grid, ADMIN_KEY)
    absent = schemas.StdinIn(digest="blake3:" + "0" * 64, size=5)
    with pytest.raises(errors.InvalidRequest, match="not uploaded: <stdin>"):
        await submit_script(grid, admin, "print(1)\n", stdin=absent)
    with pytest.raises(errors.InvalidRequest, match="empty stdin"):
        await submit_script(
            grid, admin, "print(1)\n", stdin=schemas.StdinIn(digest=absent.digest, size=0)
        )
    empty = schemas.StdinIn(digest=digests.of_bytes(b""), size=0)
    assert (await submit_script(grid, admin, "print(1)\n", stdin=empty)).stdin_size == 0
    assert (await submit_script(grid, admin, "print(1)\n")).stdin_size is None

    sha = await upload(grid, admin, b"a,b\n1,2\n")
    original = await submit_script(
        grid, admin, "print(2)\n", stdin=schemas.StdinIn(digest=sha, size=8)
    )
    assert original.stdin_size == 8
    await service.cancel(grid, admin, original.id)
    again = await service.retry(grid, admin, original.id, force=True)
    async with store.transaction(grid.sessions) as session:
        rows = [await repo.get_row(session, e.id) for e in (original, again)]
    assert [(r.stdin_digest, r.stdin_size) for r in rows if r] == [(sha, 8)] * 2
    assert rows[0] and rows[1] and rows[1].cache_parts == rows[0].cache_parts
    assert rows[0].cache_parts and rows[0].cache_parts["stdin"] == sha
