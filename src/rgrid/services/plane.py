"""The control plane's operations for one attempt of an execution (SPEC §9): fetch an input,
store an output, append log lines, renew the lease. Service functions, so that an HTTP route
can offer them to a remote runner as ``GridControlPlane`` offers them to a runner in this
process; each write is refused (``errors.LeaseLost``) once the attempt no longer holds the
execution."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from rgrid import digests, domain, errors, store
from rgrid.services import Grid, blobs
from rgrid.storage import blob_key
from rgrid.store import executions as repo
from rgrid.store import logs as log_repo

logger = logging.getLogger(__name__)


async def renew_lease(grid: Grid, execution_id: str, worker: str, until: datetime) -> bool | None:
    """Extend the lease of ``worker`` on a running execution: whether a cancel was asked for,
    or None if it no longer holds it."""
    async with store.transaction(grid.sessions) as session:
        return await repo.renew_lease(session, execution_id, worker, until)


async def cancels_asked(grid: Grid, execution_ids: list[str]) -> list[str]:
    """Which of these executions a cancel was asked for (through any server)."""
    async with store.reading(grid.sessions) as session:
        return await repo.cancel_requested(session, execution_ids)


class Attempt(NamedTuple):
    """Who asks: one attempt of one execution, run by one worker."""

    account_id: str
    execution_id: str
    attempt: int
    worker: str


def _stale(who: Attempt, what: str) -> errors.LeaseLost:
    logger.warning(
        "a stale attempt's %s refused",
        what,
        extra={
            "action": "stale_attempt_refused",
            "execution_id": who.execution_id,
            "attempt": who.attempt,
        },
    )
    return errors.LeaseLost(f"attempt {who.attempt} of {who.execution_id} no longer holds it")


async def fetch_input(grid: Grid, who: Attempt, ref: domain.FileRef, dest: Path) -> None:
    """The input's bytes, verified: a blob gone from storage or not matching its digest is
    ``BlobCorrupt`` and marked missing, so the next `rgrid run` uploads it again."""

    account = who.account_id
    what = f"input {ref.path!r}"
    try:
        await grid.storage.copy_to_file(blob_key(account, ref.digest), dest)
    except errors.NotFound:
        raise await blobs.lose_blob(grid, account, ref.digest, what) from None
    if not await asyncio.to_thread(digests.file_matches, dest, ref.digest):
        dest.unlink(missing_ok=True)
        raise await blobs.lose_blob(grid, account, ref.digest, what)


async def copy_inputs(
    grid: Grid, who: Attempt, placed: Sequence[tuple[domain.FileRef, Path]]
) -> list[bool]:
    """Inputs copied in one go where the storage vouches for their content (see
    ``runner.ControlPlane.copy_inputs``)."""
    account = who.account_id
    wanted = [(blob_key(account, ref.digest), ref.digest, dest) for ref, dest in placed]
    return await grid.storage.copy_to_files(wanted)


async def store_outputs(
    grid: Grid, who: Attempt, files: Sequence[tuple[str, Path]]
) -> list[domain.FileRef]:
    """Store each file (relative name, path; the file is taken away) in storage. Their blobs
    are put on record, and a stale attempt's outputs refused, with the attempt's outcome, in
    its one transaction (``outcomes.record_outcome``): a transaction less per execution."""
    refs = []
    for rel, path in files:
        sha = await asyncio.to_thread(digests.of_file, path)
        key = blob_key(who.account_id, sha)
        # the work directory is discarded after collection: the file is given away, and on the
        # storage's disk renamed into place without a second copy or hash
        info = await grid.storage.put_file(key, path, digest=sha, move=True, verified=True)
        refs.append(domain.FileRef(rel, sha, info.size))
    return refs


async def append_logs(grid: Grid, who: Attempt, segments: list[domain.LogSegment]) -> None:
    """Persist log segments before returning; refused for a stale attempt."""
    # brief: the execution's row by its key, a row of lines
    async with store.transaction(grid.sessions, brief=True) as session:
        # guarded by the attempt first: a stale one appends nothing
        last = segments[-1].last_seq
        if not await repo.advance_log(session, who.execution_id, who.worker, who.attempt, last):
            raise _stale(who, "log lines")
        await log_repo.append(session, who.execution_id, segments)
    grid.notifier.notify(who.execution_id)


class GridControlPlane:
    """``runner.ControlPlane`` for a runner in the server's own process, for one attempt: the
    functions above, bound to it. Once another attempt holds the execution (this one's lease
    expired), its logs and outputs are refused (``errors.LeaseLost``)."""

    def __init__(self, grid: Grid, spec: domain.ExecutionSpec, worker: str) -> None:
        self._grid = grid
        self._who = Attempt(spec.account_id, spec.execution_id, spec.attempt, worker)

    async def fetch_input(self, ref: domain.FileRef, dest: Path) -> None:
        await fetch_input(self._grid, self._who, ref, dest)

    async def copy_inputs(self, placed: Sequence[tuple[domain.FileRef, Path]]) -> list[bool]:
        return await copy_inputs(self._grid, self._who, placed)

    async def store_outputs(self, files: Sequence[tuple[str, Path]]) -> list[domain.FileRef]:
        return await store_outputs(self._grid, self._who, files)

    async def append_logs(self, segments: list[domain.LogSegment]) -> None:
        await append_logs(self._grid, self._who, segments)
