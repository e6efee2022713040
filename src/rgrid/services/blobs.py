"""Content-addressed uploads, scoped to an account: ask what is missing, then stream it in."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from rgrid import domain, errors, store
from rgrid.services import Grid, utcnow
from rgrid.storage import blob_key, validate_sha256
from rgrid.store import blobs as repo

MAX_QUERY = 100_000


async def missing_blobs(
    grid: Grid, principal: domain.Principal, hashes: Sequence[str]
) -> list[str]:
    """The hashes the caller's account does not have yet, in the order given, each once."""
    if len(hashes) > MAX_QUERY:
        raise errors.InvalidRequest(f"ask about at most {MAX_QUERY} hashes at once")
    for sha in hashes:
        validate_sha256(sha)
    async with store.transaction(grid.sessions) as session:
        present = await repo.present_blobs(session, principal.account.id, hashes)
    return list(dict.fromkeys(h for h in hashes if h not in present))


async def upload_blob(
    grid: Grid,
    principal: domain.Principal,
    sha256: str,
    chunks: AsyncIterator[bytes],
    size: int | None,
) -> int:
    """Store a streamed body under its hash; verified before it becomes visible.

    Raises ``IntegrityError`` when the bytes do not hash to ``sha256`` (nothing is stored).
    """
    key = blob_key(principal.account.id, sha256)
    info = await grid.storage.put(key, chunks, sha256=sha256, size=size)
    async with store.transaction(grid.sessions) as session:
        await repo.record_blob(session, principal.account.id, sha256, info.size, utcnow())
    return info.size
