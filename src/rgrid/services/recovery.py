"""Recovery (SPEC §9): running executions whose worker is gone are settled as ``worker_lost``
(retried while retries are left): their lease expired, or their worker was a process on this
host that no longer exists."""

from __future__ import annotations

import logging
from datetime import datetime

from rgrid import proc, store
from rgrid.services import Grid
from rgrid.services.outcomes import settle, worker_lost
from rgrid.store import executions as repo
from rgrid.store import workers as worker_repo

logger = logging.getLogger(__name__)


async def recover_expired(grid: Grid, worker: str, now: datetime) -> int:
    """Settle running executions whose worker is gone: their lease expired before ``now``, or
    their worker was a process on this host (other than ``worker``) that no longer exists (no
    need to wait for the lease). Returns how many were settled."""
    async with store.transaction(grid.sessions) as session:
        rows = await repo.expired_leases(session, now)
        host = grid.settings.worker_name + ":"
        seen = {row.id for row in rows}
        dead = [
            row
            for row in await repo.running_on(session, host)
            if row.id not in seen and row.worker != worker and not _alive(row.worker)
        ]
        rows += dead
        await worker_repo.set_state(session, sorted({str(r.worker) for r in dead}), "lost")
        settled = []
        for row in rows:
            lost = worker_lost("the worker running it stopped renewing its lease")
            assert row.worker is not None
            holder = (row.worker, row.attempt)
            # guarded: a lease renewed meanwhile, or an outcome recorded, is left alone
            expired = now if row.id in seen else None
            if await settle(session, row, lost, grid.settings, holder, expired) is not None:
                settled.append(row.id)
    for execution_id in settled:
        logger.warning(
            "lease expired", extra={"action": "worker_lost", "execution_id": execution_id}
        )
        grid.notifier.notify(execution_id)
    return len(settled)


def _alive(worker: str | None) -> bool:
    """Whether the server process named in a worker id ``host:pid`` still exists here."""
    pid = (worker or "").rpartition(":")[2]
    if not pid.isdigit():
        return True  # not one of ours: only its lease can tell
    return proc.alive(int(pid))
