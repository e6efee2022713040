"""Retention (SPEC §5): inputs and outputs expire ``RGRID_RETENTION_DAYS`` after they were
recorded; the janitor deletes the blobs that nothing live references any more.

An artifact's expiry is computed, ``created_at + retention``, so the setting applies to what is
already stored. A blob is deleted once it is older than the retention period and no artifact
references it that has not expired or belongs to an execution still queued or running — so a
blob a newer execution (or a cache hit) uses again is kept. Logs and execution records stay.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from rgrid import domain, errors, store
from rgrid.services import Grid, utcnow
from rgrid.storage import blob_key
from rgrid.store import blobs as blob_repo

logger = logging.getLogger(__name__)

MIN_SWEEP_EVERY_S = 1.0
MAX_SWEEP_EVERY_S = 3600.0
SWEEP_BATCH = 1000


def with_expiry(grid: Grid, artifacts: Sequence[domain.Artifact]) -> list[domain.Artifact]:
    """The artifacts with their expiry filled in."""
    retention = grid.settings.retention
    return [dataclasses.replace(a, expires_at=a.created_at + retention) for a in artifacts]


def expired(grid: Grid, artifact: domain.Artifact, now: datetime | None = None) -> bool:
    return artifact.created_at + grid.settings.retention <= (now or utcnow())


def ensure_kept(grid: Grid, artifact: domain.Artifact) -> None:
    """``errors.ArtifactExpired`` (410) naming the date, for an artifact past its retention."""
    if expired(grid, artifact):
        when = artifact.created_at + grid.settings.retention
        raise errors.ArtifactExpired(
            f"{artifact.path} expired on {when:%Y-%m-%d %H:%M:%S} UTC "
            f"(the grid keeps files for {grid.settings.retention_days:g} days)",
            hint="run the script again to produce it anew",
            details={"expired_at": when.isoformat()},
        )


def sweep_every_s(grid: Grid) -> float:
    """How often the janitor runs: a quarter of the retention period, within 1 s .. 1 h."""
    quarter = grid.settings.retention.total_seconds() / 4
    return min(MAX_SWEEP_EVERY_S, max(MIN_SWEEP_EVERY_S, quarter))


def storage_expiry_days(grid: Grid) -> int:
    """After how many days unwritten the storage itself may delete a blob (S3 lifecycle): a
    whole day past the period, so it never runs ahead of the janitor, only catches what the
    janitor missed (a grid down for long, an object written but never recorded)."""
    return math.ceil(grid.settings.retention_days) + 1


Blobs = list[tuple[str, str]]  # (account id, digest)


async def sweep(grid: Grid, now: datetime | None = None) -> int:
    """Delete the blobs retention no longer keeps; returns how many were deleted. Where the
    storage deletes old blobs by itself, the ones still in use are rewritten first."""
    now = now or utcnow()
    if grid.blobs_age_out:
        await rewrite_in_use(grid, now)
    cutoff = now - grid.settings.retention

    async def pick(session: AsyncSession) -> Blobs:
        doomed = await blob_repo.unreferenced_blobs(session, cutoff, SWEEP_BATCH)
        # the rows go first: from then on the grid asks for the content to be uploaded again
        await blob_repo.forget_blobs(session, doomed)
        return doomed

    async def settle(session: AsyncSession, doomed: Blobs) -> None:
        # an upload of the same content that raced the deletion lost its object
        await blob_repo.forget_blobs(session, doomed, created_after=cutoff)

    deleted = await _in_batches(grid, pick, grid.storage.delete, settle)
    if deleted:
        logger.info("retention removed %d blob(s)", deleted, extra={"action": "blobs_expired"})
    return deleted


async def rewrite_in_use(grid: Grid, now: datetime) -> int:
    """Rewrite the blobs still in use that were written half a period ago or earlier, so the
    storage's own age limit (``storage_expiry_days``) never takes one from under a newer
    execution or a cache hit: while in use a blob is never older than half a period plus a
    sweep interval. Returns how many were rewritten."""
    cutoff = now - grid.settings.retention
    written_before = now - grid.settings.retention / 2

    async def pick(session: AsyncSession) -> Blobs:
        return await blob_repo.blobs_in_use(session, cutoff, written_before, SWEEP_BATCH)

    async def settle(session: AsyncSession, due: Blobs) -> None:
        await blob_repo.mark_rewritten(session, due, now)  # (not later than the copy)

    rewritten = await _in_batches(grid, pick, grid.storage.rewrite, settle)
    if rewritten:
        logger.info("rewrote %d blob(s) in use", rewritten, extra={"action": "blobs_rewritten"})
    return rewritten


async def _in_batches(
    grid: Grid,
    pick: Callable[[AsyncSession], Awaitable[Blobs]],
    act: Callable[[str], Awaitable[None]],
    settle: Callable[[AsyncSession, Blobs], Awaitable[None]],
) -> int:
    """Up to ``SWEEP_BATCH`` blobs at a time: ``pick`` them in one transaction, ``act`` on
    each one's storage key outside it, ``settle`` them in another; returns how many."""
    done = 0
    while True:
        async with store.transaction(grid.sessions) as session:
            batch = await pick(session)
        for account_id, digest in batch:
            await act(blob_key(account_id, digest))
        if batch:
            async with store.transaction(grid.sessions) as session:
                await settle(session, batch)
        done += len(batch)
        if len(batch) < SWEEP_BATCH:
            return done
