"""Project trees (SPEC §4.1): sent once, named by their digest, carried by executions.

A run's tree is most of its files (thousands, in a real project) and is the same from one run
to the next. Recording it per execution would cost a row per file per run; instead it is
stored once per account (``store.trees``) and executions name it. The CLI submits naming the
tree; only when the grid does not know it (``TREE_UNKNOWN``) does it upload what is missing and
``PUT /api/v1/trees/{digest}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from rgrid import digests, domain, errors, schemas, store
from rgrid.paths import safe_relpath
from rgrid.services import Grid, utcnow
from rgrid.store import blobs as blob_repo
from rgrid.store import trees as repo

MAX_TREE_FILES = 100_000
MAX_TREE_DIRS = 100_000


def make(files: Iterable[schemas.FileIn | domain.FileRef], dirs: Iterable[str]) -> domain.Tree:
    """A tree of these files and directories (checked: relative paths in their normal
    spelling, each once), named by its digest."""
    refs = tuple(domain.FileRef(f.path, f.digest, f.size) for f in files)
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
    if any(ref.size < 0 or not digests.is_digest(ref.digest) for ref in refs):
        raise errors.InvalidRequest("invalid file hash or size in the tree")
    sha = digests.of_tree(((r.path, r.digest, r.size) for r in refs), folders)
    tree = domain.Tree(sha, refs, folders)
    if clash := next((ref.path for ref in refs if ref.path in tree.all_dirs), None):
        raise errors.InvalidRequest(f"{clash!r} is both a file and a directory in the tree")
    return tree


async def register(
    grid: Grid, principal: domain.Principal, digest: str, body: schemas.TreeIn
) -> domain.Tree:
    """Store a tree sent by a client (``PUT /api/v1/trees/{digest}``): its digest must be
    ``digest`` and every file's content uploaded already. Idempotent."""
    tree = make(body.files, body.dirs)
    if tree.digest != digest:
        raise errors.InvalidRequest(
            f"the tree's digest is {tree.digest}, not {digest}",
            hint="the digest is digests.of_tree of the listing sent",
        )
    async with store.transaction(grid.sessions) as session:
        await add(grid, session, principal.account.id, tree)
    return tree


async def add(grid: Grid, session: AsyncSession, account_id: str, tree: domain.Tree) -> None:
    """Store ``tree`` for the account once its files' contents are all there."""
    present = await blob_repo.present_blobs(session, account_id, [r.digest for r in tree.files])
    absent = sorted({ref.path for ref in tree.files if ref.digest not in present})
    if absent:
        raise errors.InvalidRequest(
            f"file contents not uploaded: {', '.join(absent[:5])}"
            + (f" and {len(absent) - 5} more" if len(absent) > 5 else ""),
            hint="upload the blobs with PUT /api/v1/blobs/{digest} first",
        )
    await repo.add(session, account_id, tree, utcnow())
    grid.trees.remember(account_id, tree)


async def resolve(
    grid: Grid, session: AsyncSession, account_id: str, digest: str | None
) -> domain.Tree | None:
    """The tree a submission names (None: it names none); ``TreeUnknown`` if not stored."""
    if digest is None:
        return None
    if not await repo.known(session, account_id, digest):
        raise errors.TreeUnknown(
            f"the grid does not hold the project tree {digest[:19]}…",
            hint="send it with PUT /api/v1/trees/{digest} (the CLI does), then submit again",
        )
    tree = await grid.trees.get(session, account_id, digest)
    assert tree is not None  # known a moment ago, in this transaction
    return tree


async def of_submission(
    grid: Grid,
    session: AsyncSession,
    account_id: str,
    digest: str | None,
    files: Sequence[schemas.FileIn],
    dirs: Sequence[str],
) -> tuple[domain.Tree | None, list[schemas.FileIn]]:
    """A submission's tree and its named files. A client that sends its tree's files inline
    (``FileIn.tree``, and ``dirs``) instead of naming a stored tree gets them stored as one."""
    inline = [f for f in files if f.tree]
    named = [f for f in files if not f.tree]
    if digest is not None:
        if inline or dirs:
            raise errors.InvalidRequest("a submission names a tree or lists its files, not both")
        return await resolve(grid, session, account_id, digest), named
    if not inline and not dirs:
        return None, named
    tree = make(inline, dirs)
    if not await repo.known(session, account_id, tree.digest):
        await add(grid, session, account_id, tree)
    return await grid.trees.get(session, account_id, tree.digest), named
