"""Recovery (SPEC §9): running executions whose worker is gone are settled as ``worker_lost``
(retried while retries are left): their lease expired, or their worker was a process on this
host that no longer exists.

An expired lease is only a sign that its worker died. The server whose dispatcher holds an
execution in flight (claimed, its outcome not yet recorded) knows better: it is alive, and the
lease ran out because the server stalled (a paused machine, a disk holding every commit) longer
than the lease. Its recovery renews such a lease instead of running the script a second time.
Another server's recovery, which cannot tell a stall from a death, goes by the lease."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta

from rgrid import proc, store
from rgrid.services import Grid
from rgrid.services.outcomes import settle, worker_lost
from rgrid.store import executions as repo
from rgrid.store import workers as worker_repo

logger = logging.getLogger(__name__)


async def recover_expired(
    grid: Grid,
    worker: str,
    now: datetime,
    *,
    held: Mapping[str, str] | None = None,
) -> int:
    """Settle running executions whose worker is gone: their lease expired before ``now``, or
    their worker was a process on this host (other than ``worker``) that no longer exists (no
    need to wait for the lease). ``held``: the executions in flight in the caller's own
    dispatcher, with their holders; an expired lease of one of them is renewed for a lease's
    time from ``now``, not settled. Returns how many were settled."""
    held = held or {}
    lease = timedelta(seconds=grid.settings.lease_s)
    async with store.transaction(grid.sessions) as session:
        rows = []
        for row in await repo.expired_leases(session, now):
            if row.worker is None or held.get(row.id) != row.worker:
                rows.append(row)
            elif await repo.renew_lease(session, row.id, row.worker, now + lease) is not None:
                logger.warning(
                    "a lease ran out while the server stalled: renewed",
                    extra={"action": "lease_renewed_late", "execution_id": row.id},
                )
        host = grid.settings.worker_name + ":"
        seen = {row.id for row in rows}
        dead = [
            row
            for row in await repo.running_on(session, host)
            if row.id not in seen and row.worker != worker and not _alive(row.worker)
        ]
        rows += dead
        await worker_repo.set_state(session, sorted({str(r.worker) for r in dead}), "lost")
        settled: list[tuple[str, str | None, bool]] = []  # id, batch, retried
        for row in rows:
            lost = worker_lost("the worker running it stopped renewing its lease")
            assert row.worker is not None
            holder = (row.worker, row.attempt)
            # guarded: a lease renewed meanwhile, or an outcome recorded, is left alone
            expired = now if row.id in seen else None
            retried = await settle(session, row, lost, grid.settings, holder, expired)
            if retried is not None:
                settled.append((row.id, row.batch_id, retried))
    for execution_id, batch_id, retried in settled:
        logger.warning(
            "lease expired", extra={"action": "worker_lost", "execution_id": execution_id}
        )
        grid.notifier.notify(execution_id, ended_in_batch=None if retried else batch_id)
    return len(settled)


def _alive(worker: str | None) -> bool:
    """Whether the server process named in a worker id ``host:pid`` still exists here."""
    pid = (worker or "").rpartition(":")[2]
    if not pid.isdigit():
        return True  # not one of ours: only its lease can tell
    return proc.alive(int(pid))
