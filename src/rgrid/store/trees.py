"""Project trees (``domain.Tree``): stored once per account, named by their digest."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from rgrid import domain
from rgrid.store import dialect_insert, sqlite_async
from rgrid.store.models import TreeFileRow, TreeRow


async def known(session: AsyncSession, account_id: str, digest: str) -> bool:
    row = await session.scalar(
        select(TreeRow.digest).where(TreeRow.account_id == account_id, TreeRow.digest == digest)
    )
    return row is not None


async def add(session: AsyncSession, account_id: str, tree: domain.Tree, now: datetime) -> bool:
    """Store ``tree`` unless it is stored already (also when two submissions race); whether it
    was new."""
    created = await session.execute(
        dialect_insert(session)(TreeRow)
        .values(
            account_id=account_id,
            digest=tree.digest,
            dirs=list(tree.dirs),
            file_count=len(tree.files),
            total_bytes=sum(ref.size for ref in tree.files),
            created_at=now,
        )
        .on_conflict_do_nothing()
        .returning(TreeRow.digest)
    )
    if created.scalar() is None:
        return False
    rows = [
        {
            "account_id": account_id,
            "tree_digest": tree.digest,
            "path": ref.path,
            "digest": ref.digest,
            "size": ref.size,
        }
        for ref in tree.files
    ]
    if rows:  # one executemany
        await session.execute(insert(TreeFileRow), rows)
    return True


async def load(session: AsyncSession, account_id: str, digest: str) -> domain.Tree | None:
    """The stored tree, or None."""
    # thousands of rows, maybe: on SQLite not on the event loop, even in a brief transaction
    with sqlite_async.brief(False):
        return await _load(session, account_id, digest)


async def _load(session: AsyncSession, account_id: str, digest: str) -> domain.Tree | None:
    dirs = await session.scalar(
        select(TreeRow.dirs).where(TreeRow.account_id == account_id, TreeRow.digest == digest)
    )
    if dirs is None:
        return None
    rows = await session.execute(
        select(TreeFileRow.path, TreeFileRow.digest, TreeFileRow.size)
        .where(TreeFileRow.account_id == account_id, TreeFileRow.tree_digest == digest)
        .order_by(TreeFileRow.path)
    )
    files = tuple(domain.FileRef(path, sha, size) for path, sha, size in rows)
    return domain.Tree(digest, files, tuple(dirs))


async def forget_holding(session: AsyncSession, blobs: Sequence[tuple[str, str]]) -> list[str]:
    """Forget the trees that hold any of these (account, digest) blobs, which are going: a run
    naming such a tree again is told to send it anew. Returns the trees' digests."""
    gone: set[tuple[str, str]] = set()
    for account_id, digest in blobs:
        holders = await session.scalars(
            select(TreeFileRow.tree_digest)
            .where(TreeFileRow.account_id == account_id, TreeFileRow.digest == digest)
            .distinct()
        )
        gone.update((account_id, tree) for tree in holders)
    for account_id, tree in sorted(gone):
        await session.execute(
            delete(TreeFileRow).where(
                TreeFileRow.account_id == account_id, TreeFileRow.tree_digest == tree
            )
        )
        await session.execute(
            delete(TreeRow).where(TreeRow.account_id == account_id, TreeRow.digest == tree)
        )
    return sorted(tree for _, tree in gone)
