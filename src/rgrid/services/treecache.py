"""The listings of recently used project trees, kept in a grid process's memory."""

from __future__ import annotations

import collections

from sqlalchemy.ext.asyncio import AsyncSession

from rgrid import domain
from rgrid.store import trees as repo

#: trees whose listing a grid process keeps (a listing never changes)
CACHED_TREES = 32


class TreeCache:
    """The listings of recently used trees, by (account, digest): claiming an execution, and
    matching it against earlier runs in the result cache, need no database read for them.
    Whether a tree is still *known* (its files not expired) is always asked of the store."""

    def __init__(self, size: int = CACHED_TREES) -> None:
        self._size = size
        self._trees: collections.OrderedDict[tuple[str, str], domain.Tree] = (
            collections.OrderedDict()
        )

    def remember(self, account_id: str, tree: domain.Tree) -> domain.Tree:
        key = (account_id, tree.digest)
        self._trees[key] = tree
        self._trees.move_to_end(key)
        while len(self._trees) > self._size:
            self._trees.popitem(last=False)
        return tree

    async def get(self, session: AsyncSession, account_id: str, digest: str) -> domain.Tree | None:
        """The tree's listing (from memory when recently used), or None if it is not stored."""
        cached = self._trees.get((account_id, digest))
        if cached is not None:
            self._trees.move_to_end((account_id, digest))
            return cached
        tree = await repo.load(session, account_id, digest)
        return self.remember(account_id, tree) if tree is not None else None
