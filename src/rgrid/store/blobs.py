"""Which blobs an account has, and the artifacts (inputs and outputs) of executions."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, delete, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from rgrid import domain
from rgrid.store import dialect_insert
from rgrid.store.models import ArtifactRow, BlobRow, ExecutionRow, TreeFileRow


async def present_blobs(session: AsyncSession, account_id: str, hashes: Sequence[str]) -> set[str]:
    """The subset of ``hashes`` this account already stored."""
    found: set[str] = set()
    unique = sorted(set(hashes))
    for start in range(0, len(unique), 500):  # stay under bind-parameter limits
        chunk = unique[start : start + 500]
        rows = await session.scalars(
            select(BlobRow.digest).where(
                BlobRow.account_id == account_id, BlobRow.digest.in_(chunk)
            )
        )
        found.update(rows)
    return found


async def record_blob(
    session: AsyncSession, account_id: str, digest: str, size: int, now: datetime
) -> None:
    """Idempotent, also when several uploads of the same content race."""
    insert = dialect_insert(session)
    await session.execute(
        insert(BlobRow)
        .values(account_id=account_id, digest=digest, size=size, created_at=now)
        .on_conflict_do_nothing()
    )


async def record_blobs(
    session: AsyncSession, account_id: str, blobs: Iterable[tuple[str, int]], now: datetime
) -> None:
    """``record_blob`` for each (digest, size), in one executemany."""
    rows = [
        {"account_id": account_id, "digest": digest, "size": size, "created_at": now}
        for digest, size in dict(blobs).items()
    ]
    if rows:
        await session.execute(_blob_insert(session.get_bind().dialect.name), rows)


@functools.lru_cache(maxsize=2)
def _blob_insert(dialect: str) -> Any:
    """``record_blobs``' statement, built once per database kind: on the table, not the ORM
    class (the ORM's bulk machinery cost more than the insert on every outcome)."""
    insert_of = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert_of(cast(Table, BlobRow.__table__)).on_conflict_do_nothing()


ARTIFACT_COLUMNS = (
    ArtifactRow.execution_id,
    ArtifactRow.kind,
    ArtifactRow.path,
    ArtifactRow.digest,
    ArtifactRow.size,
    ArtifactRow.created_at,
    ArtifactRow.expires_at,
)


def _artifact(row: Any) -> domain.Artifact:  # an ArtifactRow, or a Row of ARTIFACT_COLUMNS
    return domain.Artifact(
        execution_id=row.execution_id,
        kind=domain.ArtifactKind(row.kind),
        path=row.path,
        digest=row.digest,
        size=row.size,
        created_at=row.created_at,
        expires_at=row.expires_at,
    )


async def add_artifacts(
    session: AsyncSession,
    execution_id: str,
    kind: domain.ArtifactKind,
    files: Iterable[domain.FileRef],
    now: datetime,
) -> None:
    rows = [
        {
            "execution_id": execution_id,
            "kind": kind.value,
            "path": ref.path,
            "digest": ref.digest,
            "size": ref.size,
            "created_at": now,
        }
        for ref in files
    ]
    if rows:  # one executemany, not an ORM object per file (a project tree has thousands)
        await session.execute(_ARTIFACT_INSERT, rows)


#: ``add_artifacts``' statement: on the table, not the ORM class (see ``_blob_insert``)
_ARTIFACT_INSERT = insert(cast(Table, ArtifactRow.__table__))


async def list_artifacts(
    session: AsyncSession,
    execution_id: str,
    kind: domain.ArtifactKind | None = None,
    limit: int | None = None,
) -> list[domain.Artifact]:
    """An execution's artifacts by path (the first ``limit`` of them)."""
    # plain rows, not ORM objects: an execution of a project tree has thousands
    query = select(*ARTIFACT_COLUMNS).where(ArtifactRow.execution_id == execution_id)
    if kind is not None:
        query = query.where(ArtifactRow.kind == kind.value)
    rows = await session.execute(query.order_by(ArtifactRow.path).limit(limit))
    return [_artifact(row) for row in rows]


async def find_artifact(
    session: AsyncSession, execution_id: str, kind: domain.ArtifactKind, path: str
) -> domain.Artifact | None:
    """One artifact of an execution, by its path."""
    rows = await session.execute(
        select(*ARTIFACT_COLUMNS).where(
            ArtifactRow.execution_id == execution_id,
            ArtifactRow.kind == kind.value,
            ArtifactRow.path == path,
        )
    )
    row = rows.first()
    return None if row is None else _artifact(row)


async def list_files(
    session: AsyncSession, execution_id: str, kind: domain.ArtifactKind
) -> list[domain.FileRef]:
    """An execution's inputs or outputs as path, digest and size only: what a worker needs,
    read without the rest of each row (an execution of a project tree has thousands)."""
    rows = await session.execute(
        select(ArtifactRow.path, ArtifactRow.digest, ArtifactRow.size)
        .where(ArtifactRow.execution_id == execution_id, ArtifactRow.kind == kind.value)
        .order_by(ArtifactRow.path)
    )
    return [domain.FileRef(path, digest, size) for path, digest, size in rows]


async def outputs_of(
    session: AsyncSession, execution_ids: Sequence[str]
) -> dict[str, list[domain.Artifact]]:
    found: dict[str, list[domain.Artifact]] = {}
    for start in range(0, len(execution_ids), 500):
        # plain rows, not ORM objects: a follower's every poll reads those of many items
        rows = await session.execute(
            select(*ARTIFACT_COLUMNS)
            .where(
                ArtifactRow.execution_id.in_(execution_ids[start : start + 500]),
                ArtifactRow.kind == domain.ArtifactKind.OUTPUT.value,
            )
            .order_by(ArtifactRow.execution_id, ArtifactRow.path)
        )
        for row in rows:
            found.setdefault(row.execution_id, []).append(_artifact(row))
    return found


def _in_use(cutoff: datetime) -> ColumnElement[bool]:
    """Whether an artifact references the blob that was recorded after ``cutoff`` or belongs to
    an execution not yet ended, or an execution created after ``cutoff`` or not yet ended has
    it as its stdin or in its project tree — kept as long as its inputs (for a query over
    ``BlobRow``)."""
    live = ExecutionRow.state.in_([s.value for s in domain.ExecutionState if not s.terminal])
    as_artifact = (
        select(ArtifactRow.digest)
        .join(ExecutionRow, ExecutionRow.id == ArtifactRow.execution_id)
        .where(
            ExecutionRow.account_id == BlobRow.account_id,
            ArtifactRow.digest == BlobRow.digest,
            or_(ArtifactRow.created_at > cutoff, live),
        )
        .exists()
    )
    as_stdin = (
        select(ExecutionRow.id)
        .where(
            ExecutionRow.account_id == BlobRow.account_id,
            ExecutionRow.stdin_digest == BlobRow.digest,
            or_(ExecutionRow.created_at > cutoff, live),
        )
        .exists()
    )
    # a file of a project tree that an execution carries, as long as that execution's inputs
    in_tree = (
        select(TreeFileRow.digest)
        .join(
            ExecutionRow,
            (ExecutionRow.account_id == TreeFileRow.account_id)
            & (ExecutionRow.tree_digest == TreeFileRow.tree_digest),
        )
        .where(
            TreeFileRow.account_id == BlobRow.account_id,
            TreeFileRow.digest == BlobRow.digest,
            or_(ExecutionRow.created_at > cutoff, live),
        )
        .exists()
    )
    return or_(as_artifact, as_stdin, in_tree)


async def unreferenced_blobs(
    session: AsyncSession, cutoff: datetime, limit: int
) -> list[tuple[str, str]]:
    """(account, digest) of blobs recorded before ``cutoff`` that no artifact references which
    was recorded after it or belongs to an execution not yet ended."""
    return await _oldest(session, limit, BlobRow.created_at <= cutoff, ~_in_use(cutoff))


async def blobs_in_use(
    session: AsyncSession, cutoff: datetime, written_before: datetime, limit: int
) -> list[tuple[str, str]]:
    """(account, digest) of blobs recorded (or rewritten) before ``written_before`` that an
    artifact still uses (as ``unreferenced_blobs`` counts use, with ``cutoff``)."""
    return await _oldest(session, limit, BlobRow.created_at <= written_before, _in_use(cutoff))


async def _oldest(
    session: AsyncSession, limit: int, *conditions: ColumnElement[bool]
) -> list[tuple[str, str]]:
    """(account, digest) of up to ``limit`` blobs meeting ``conditions``, oldest first."""
    rows = await session.execute(
        select(BlobRow.account_id, BlobRow.digest)
        .where(*conditions)
        .order_by(BlobRow.created_at)
        .limit(limit)
    )
    return [(str(account), str(sha)) for account, sha in rows]


async def mark_rewritten(
    session: AsyncSession, blobs: Sequence[tuple[str, str]], now: datetime
) -> None:
    """These blobs were written anew at ``now``: their age starts over."""
    for account_id, digest in blobs:
        await session.execute(
            update(BlobRow)
            .where(BlobRow.account_id == account_id, BlobRow.digest == digest)
            .values(created_at=now)
        )


async def forget_blobs(
    session: AsyncSession,
    blobs: Sequence[tuple[str, str]],
    created_after: datetime | None = None,
) -> None:
    """Delete these blob rows (only those recorded after ``created_after``, if given), and
    forget the project trees holding any of them (they are to be sent anew)."""
    from rgrid.store import trees

    for account_id, digest in blobs:
        query = delete(BlobRow).where(BlobRow.account_id == account_id, BlobRow.digest == digest)
        if created_after is not None:
            query = query.where(BlobRow.created_at > created_after)
        await session.execute(query)
    await trees.forget_holding(session, blobs)
