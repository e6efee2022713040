"""Retention on both databases: which blobs the janitor deletes, with an explicit clock."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from tests.integration.store.conftest import ADMIN_KEY
from tests.integration.store.helpers import submit_script, upload
from tests.s3server import S3Server, start_s3_server

from rgrid import domain, errors, schemas, store
from rgrid.domain import ArtifactKind, ExecutionState
from rgrid.services import Grid, retention, utcnow
from rgrid.services import accounts as account_service
from rgrid.services import executions as service
from rgrid.storage import blob_key
from rgrid.storage.s3 import S3Storage
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
    sha = {e_id: {a.path: a.digest for a in arts} for e_id, arts in scripts.items()}
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


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    yield from start_s3_server()


async def test_blobs_in_use_are_rewritten_where_the_storage_expires_old_objects(
    grid: Grid, s3_server: S3Server
) -> None:
    """On S3 a lifecycle rule deletes objects unwritten for retention + 1 days; the janitor
    rewrites the blobs still in use once they are half a period old, so the rule never takes
    one from under a waiting execution."""
    client = s3_server.client()
    bucket = f"grid-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    grid.storage = S3Storage(bucket, "blobs", client=client)
    grid.blobs_age_out = await grid.storage.expire_unwritten(retention.storage_expiry_days(grid))
    assert grid.blobs_age_out
    (rule,) = client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert rule["Expiration"] == {"Days": 31} and rule["Filter"] == {"Prefix": "blobs/"}

    admin = await account_service.authenticate(grid, ADMIN_KEY)
    account = admin.account.id
    waiting = await submit_script(grid, admin, "print('w')\n", files={"in.csv": b"9\n"})
    done = await submit_script(grid, admin, "print('d')\n")
    await age(grid, waiting.id, 31, ExecutionState.QUEUED)  # every blob row: 40 days old
    await age(grid, done.id, 31, ExecutionState.SUCCEEDED)
    _, inputs = await service.list_artifacts(grid, admin, waiting.id, ArtifactKind.INPUT)
    in_use = sorted(a.digest for a in inputs)
    _, (done_script,) = await service.list_artifacts(grid, admin, done.id, ArtifactKind.INPUT)

    def written(digest: str) -> object:
        name = f"blobs/{blob_key(account, digest)}"
        return client.head_object(Bucket=bucket, Key=name)["LastModified"]

    before = {sha: written(sha) for sha in in_use}
    await asyncio.sleep(1.1)  # S3 times have whole seconds
    assert await retention.sweep(grid) == 1  # the finished run's script only
    assert await grid.storage.stat(blob_key(account, done_script.digest)) is None
    for sha in in_use:
        assert written(sha) > before[sha]  # rewritten: the rule's clock starts over
        assert await grid.storage.stat(blob_key(account, sha)) is not None
    async with store.transaction(grid.sessions) as session:
        rows = (await session.execute(select(BlobRow.created_at))).scalars().all()
    assert len(rows) == 2 and all(utcnow() - t < timedelta(minutes=1) for t in rows)
    assert await retention.rewrite_in_use(grid, utcnow()) == 0  # young again: nothing to do


async def test_a_stdin_blob_is_kept_as_long_as_the_executions_inputs(grid: Grid) -> None:
    """Retention counts an execution's stdin like its input files: kept while the execution
    is recent or not ended, deleted once nothing live uses it."""
    admin = await account_service.authenticate(grid, ADMIN_KEY)
    account = admin.account.id
    stdins = {}
    for label, days, state in (
        ("old", 31, ExecutionState.SUCCEEDED),
        ("recent", 1, ExecutionState.FAILED),
        ("waiting", 31, ExecutionState.QUEUED),
    ):
        data = f"stdin of the {label} run\n".encode()
        sha = await upload(grid, admin, data)
        stdin = schemas.StdinIn(digest=sha, size=len(data))
        execution = await submit_script(grid, admin, f"print({label!r})\n", stdin=stdin)
        await age(grid, execution.id, days, state)
        async with store.transaction(grid.sessions) as session:
            then = utcnow() - days * DAY
            await session.execute(
                update(ExecutionRow).where(ExecutionRow.id == execution.id).values(created_at=then)
            )
        stdins[label] = sha

    await retention.sweep(grid)

    kept = {
        label
        for label, sha in stdins.items()
        if await grid.storage.stat(blob_key(account, sha)) is not None
    }
    assert kept == {"recent", "waiting"}
