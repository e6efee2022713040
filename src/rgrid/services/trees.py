"""Project trees (SPEC §4.1): sent once, named by their digest, carried by executions.

A run's tree is most of its files (thousands, in a real project) and is the same from one run
to the next. Recording it per execution would cost a row per file per run; instead it is
stored once per account (``store.trees``) and executions name it. The CLI submits naming the
tree; only when the grid does not know it (``TREE_UNKNOWN``) does it upload what is missing and
``PUT /api/v1/trees/{sha256}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from rgrid import domain, errors, schemas, store
from rgrid.paths import safe_relpath
from rgrid.services import Grid, utcnow
from rgrid.store import blobs as blob_repo
from rgrid.store import trees as repo

MAX_TREE_FILES = 100_000
SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_TREE_DIRS = 100_000


def make(files: Iterable[schemas.FileIn | domain.FileRef], dirs: Iterable[str]) -> domain.Tree:
    """A tree of these files and directories (checked: relative paths in their normal
    spelling, each once), named by its digest."""
    refs = tuple(domain.FileRef(f.path, f.sha256, f.size) for f in files)
    folders = tuple(sorted(set(dirs)))
    if len(refs) > MAX_TREE_FILES or len(folders) > MAX_TREE_DIRS:
        raise errors.InvalidRequest(
            f"a project tree holds at most {MAX_TREE_FILES} files and {MAX_TREE_DIRS} directories"
        )
    for path in [*(ref.path for ref in refs), *folders]:
        if str(safe_relpath(path)) != path:
            raise errors.UnsafePath(f"{path!r} is not a normalised relative path")
    if len({ref.path for ref in refs}) != len(refs):
        raise errors.InvalidRequest("the same path is given twice in the tree")
    if any(ref.size < 0 or not SHA256.match(ref.sha256) for ref in refs):
        raise errors.InvalidRequest("invalid file hash or size in the tree")
    sha = domain.tree_digest(((r.path, r.sha256, r.size) for r in refs), folders)
    tree = domain.Tree(sha, refs, folders)
    if clash := next((ref.path for ref in refs if ref.path in tree.all_dirs), None):
        raise errors.InvalidRequest(f"{clash!r} is both a file and a directory in the tree")
    return tree


async def register(
    grid: Grid, principal: domain.Principal, sha256: str, body: schemas.TreeIn
) -> domain.Tree:
    """Store a tree sent by a client (``PUT /api/v1/trees/{sha256}``): its digest must be
    ``sha256`` and every file's content uploaded already. Idempotent."""
    tree = make(body.files, body.dirs)
    if tree.sha256 != sha256:
        raise errors.InvalidRequest(
            f"the tree's digest is {tree.sha256}, not {sha256}",
            hint="the digest is domain.tree_digest of the listing sent",
        )
    async with store.transaction(grid.sessions) as session:
        await add(grid, session, principal.account.id, tree)
    return tree


async def add(grid: Grid, session: AsyncSession, account_id: str, tree: domain.Tree) -> None:
    """Store ``tree`` for the account once its files' contents are all there."""
    present = await blob_repo.present_blobs(session, account_id, [r.sha256 for r in tree.files])
    absent = sorted({ref.path for ref in tree.files if ref.sha256 not in present})
    if absent:
        raise errors.InvalidRequest(
            f"file contents not uploaded: {', '.join(absent[:5])}"
            + (f" and {len(absent) - 5} more" if len(absent) > 5 else ""),
            hint="upload the blobs with PUT /api/v1/blobs/{sha256} first",
        )
    await repo.add(session, account_id, tree, utcnow())
    grid.trees.remember(account_id, tree)


async def resolve(
    grid: Grid, session: AsyncSession, account_id: str, sha256: str | None
) -> domain.Tree | None:
    """The tree a submission names (None: it names none); ``TreeUnknown`` if not stored."""
    if sha256 is None:
        return None
    if not await repo.known(session, account_id, sha256):
        raise errors.TreeUnknown(
            f"the grid does not hold the project tree {sha256[:12]}…",
            hint="send it with PUT /api/v1/trees/{sha256} (the CLI does), then submit again",
        )
    tree = await grid.trees.get(session, account_id, sha256)
    assert tree is not None  # known a moment ago, in this transaction
    return tree


async def of_submission(
    grid: Grid,
    session: AsyncSession,
    account_id: str,
    sha256: str | None,
    files: Sequence[schemas.FileIn],
    dirs: Sequence[str],
) -> tuple[domain.Tree | None, list[schemas.FileIn]]:
    """A submission's tree and its named files. A client that sends its tree's files inline
    (``FileIn.tree``, and ``dirs``) instead of naming a stored tree gets them stored as one."""
    inline = [f for f in files if f.tree]
    named = [f for f in files if not f.tree]
    if sha256 is not None:
        if inline or dirs:
            raise errors.InvalidRequest("a submission names a tree or lists its files, not both")
        return await resolve(grid, session, account_id, sha256), named
    if not inline and not dirs:
        return None, named
    tree = make(inline, dirs)
    if not await repo.known(session, account_id, tree.sha256):
        await add(grid, session, account_id, tree)
    return await grid.trees.get(session, account_id, tree.sha256), named
