"""Retention on both databases: which blobs the janitor deletes, with an explicit clock."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update
from tests.integration.store.conftest import ADMIN_KEY
from tests.integration.store.helpers import submit_script, upload

from rgrid import domain, errors, store
from rgrid.domain import ArtifactKind, ExecutionState
from rgrid.services import Grid, retention, utcnow
from rgrid.services import accounts as account_service
from rgrid.services import executions as service
from rgrid.storage import blob_key
from rgrid.store import blobs as blob_repo
from rgrid.store.models import ArtifactRow, BlobRow, ExecutionRow

DAY = timedelta(days=1)


async def age(grid: Grid, execution_id: str, days: float, state: ExecutionState) -> None:
    """Make an execution's artifacts (and every blob row) look ``days`` old."""
    then = utcnow() - days * DAY
    async with store.transaction(grid.sessions) as session:
        await session.execute(
            update(ArtifactRow)
            .where(ArtifactRow.execution_id == execution_id)
            .values(created_at=then)
        )
        await session.execute(
            update(ExecutionRow).where(ExecutionRow.id == execution_id).values(state=state.value)
        )
        await session.execute(update(BlobRow).values(created_at=utcnow() - 40 * DAY))


async def test_the_janitor_deletes_only_blobs_nothing_live_references(grid: Grid) -> None:
    admin = await account_service.authenticate(grid, ADMIN_KEY)
    account = admin.account.id
    shared = b"1,2,3\n"
    old = await submit_script(grid, admin, "print('old')\n", files={"data.csv": shared})
    new = await submit_script(grid, admin, "print('new')\n", files={"data.csv": shared})
    waiting = await submit_script(grid, admin, "print('waiting')\n")
    output = await upload(grid, admin, b"an old result\n")
    async with store.transaction(grid.sessions) as session:
        ref = domain.FileRef("result.txt", output, 14)
        await blob_repo.add_artifacts(session, old.id, ArtifactKind.OUTPUT, [ref], utcnow())
    await age(grid, old.id, 31, ExecutionState.SUCCEEDED)
    await age(grid, new.id, 1, ExecutionState.SUCCEEDED)
    await age(grid, waiting.id, 31, ExecutionState.QUEUED)  # still waiting: kept whatever its age

    deleted = await retention.sweep(grid)

    scripts = {
        e.id: (await service.list_artifacts(grid, admin, e.id, ArtifactKind.INPUT))[1]
        for e in (old, new, waiting)
    }
    sha = {e_id: {a.path: a.sha256 for a in arts} for e_id, arts in scripts.items()}
    gone = {sha[old.id]["main.py"], output}
    kept = {sha[new.id]["main.py"], sha[new.id]["data.csv"], sha[waiting.id]["main.py"]}
    assert deleted == len(gone)
    for digest in gone:
        assert await grid.storage.stat(blob_key(account, digest)) is None
    for digest in kept:
        assert await grid.storage.stat(blob_key(account, digest)) is not None
    async with store.transaction(grid.sessions) as session:
        present = await blob_repo.present_blobs(session, account, [*gone, *kept])
    assert present == kept  # a deleted blob is asked for again on the next upload
    assert await retention.sweep(grid) == 0  # nothing more to do

    # the old run's output is expired: listed with its expiry, refused with the date
    _, outputs = await service.list_artifacts(grid, admin, old.id, ArtifactKind.OUTPUT)
    (listed,) = outputs
    assert listed.expires_at is not None and listed.expires_at < utcnow()
    with pytest.raises(errors.ArtifactExpired, match=r"result.txt expired on \d{4}-\d\d-\d\d"):
        await service.open_output(grid, admin, old.id, "result.txt")
    assert (await service.get(grid, admin, old.id)).state is ExecutionState.SUCCEEDED  # kept


async def test_nothing_is_deleted_before_the_retention_period(grid: Grid) -> None:
    admin = await account_service.authenticate(grid, ADMIN_KEY)
    done = await submit_script(grid, admin, "print(1)\n")
    await age(grid, done.id, 29, ExecutionState.SUCCEEDED)
    async with store.transaction(grid.sessions) as session:
        await session.execute(update(BlobRow).values(created_at=utcnow() - 29 * DAY))
    assert await retention.sweep(grid) == 0
    assert await retention.sweep(grid, now=utcnow() + 2 * DAY) == 1
