"""An attempt's outcome recorded (SPEC §6, §11): final, or queued again for a retry after a
transient failure; charged for its run time at its worker's price. Only the attempt that holds
the execution can record one (``store.executions.transition``)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from rgrid import domain, store
from rgrid.domain import ArtifactKind, ExecutionState, FailureClass
from rgrid.money import slot_cost
from rgrid.services import Grid, utcnow, workers
from rgrid.settings import ServerSettings
from rgrid.store import billing as billing_repo
from rgrid.store import blobs as blob_repo
from rgrid.store import executions as repo
from rgrid.store import logs as log_repo
from rgrid.store import workers as worker_repo

logger = logging.getLogger(__name__)


#: up to this many outputs, an outcome's transaction is brief (``store.transaction``)
BRIEF_OUTPUTS = 50


async def record_outcome(
    grid: Grid,
    worker: str,
    spec: domain.ExecutionSpec,
    outcome: domain.Outcome,
    *,
    pricing: tuple[int, int] | None = None,
    claimed: domain.Execution | None = None,
) -> bool:
    """Record an attempt's outcome, only if that attempt of ``worker`` still holds the
    execution (a stale one, whose lease expired and which another attempt took over, is refused
    and logged); whether it was recorded. ``pricing``: the worker's (hourly price, slots) when
    the caller knows them (its own worker), else read from the worker's record. ``claimed``:
    the execution as this attempt's claim returned it, when the caller kept it: what the
    outcome needs of it (its start, attempt, retries, cost so far, batch) does not change while
    it runs, so it is not read again — unless it was cancelled (whether a user asked to is read).

    The outputs' blobs are put on record first, whether or not the attempt still holds the
    execution, so that retention reclaims them like any blob no artifact uses (a runner in the
    server's process leaves that to this transaction; a remote one's uploads did it already)."""
    # brief: the execution's row and its outputs' rows, by their keys (unless they are many)
    brief = len(outcome.outputs) <= BRIEF_OUTPUTS
    async with store.transaction(grid.sessions, brief=brief) as session:
        if outcome.outputs:
            await blob_repo.record_blobs(
                session, spec.account_id, ((r.digest, r.size) for r in outcome.outputs), utcnow()
            )
        if claimed is not None and outcome.state is not ExecutionState.CANCELLED:
            row: domain.Execution | None = claimed
        else:
            row = await repo.get(session, spec.execution_id, with_metadata=False)
        retried = None
        if row is not None:
            if outcome.state is ExecutionState.CANCELLED and not row.cancel_requested:
                outcome = worker_lost("the grid was stopped while the script ran")
            holder = (worker, spec.attempt)
            retried = await settle(session, row, outcome, grid.settings, holder, pricing=pricing)
        if retried is None:
            logger.warning(
                "a stale attempt's outcome refused",
                extra={
                    "action": "stale_attempt_refused",
                    "execution_id": spec.execution_id,
                    "attempt": spec.attempt,
                },
            )
            return False
        if not retried:
            await blob_repo.add_artifacts(
                session, spec.execution_id, ArtifactKind.OUTPUT, outcome.outputs, utcnow()
            )
    logger.info(
        "finished",
        extra={
            "action": "execution_finished",
            "execution_id": spec.execution_id,
            "state": outcome.state.value,
        },
    )
    batch_id = row.batch_id if row is not None and not retried else None
    grid.notifier.notify(spec.execution_id, ended_in_batch=batch_id)
    return True


worker_lost = domain.worker_lost


def tree_lost() -> domain.Outcome:
    return domain.Outcome(
        ExecutionState.FAILED,
        domain.EXIT_RGRID_FAILURE,
        FailureClass.INPUT_ERROR,
        cause="its project tree is no longer kept on the grid (a file of it was lost)",
        hint="run it again: the CLI sends the tree anew",
    )


RETRY_BACKOFF_S = 1.0
RETRY_BACKOFF_MAX_S = 30.0


async def settle(
    session: AsyncSession,
    row: domain.Execution,
    outcome: domain.Outcome,
    settings: ServerSettings,
    holder: tuple[str, int],
    lease_expired_before: datetime | None = None,
    *,
    pricing: tuple[int, int] | None = None,
) -> bool | None:
    """Record the outcome of ``holder``'s attempt (worker, attempt): a transient failure with
    retries left is queued again (state ``retrying``, after a backoff) with a log line saying
    so; anything else is final. Every attempt's run time is charged (SPEC §11). Returns whether
    it will be retried; None, with nothing recorded, when that attempt no longer holds it.
    ``pricing`` as for ``record_outcome``."""
    ended = utcnow()
    cost = row.cost_micros or 0
    if row.started_at is not None:
        run_us = max(0, (ended - row.started_at) // timedelta(microseconds=1))
        price, slots = pricing or workers.pricing(
            await worker_repo.get(session, holder[0]), settings
        )
        cost += slot_cost(run_us, price, slots)
    transient = outcome.failure_class in domain.TRANSIENT_FAILURES
    retry = transient and row.attempt <= row.max_retries
    if retry:
        delay = min(RETRY_BACKOFF_S * 2 ** (row.attempt - 1), RETRY_BACKOFF_MAX_S)
        values = {
            "retry_reason": retry_reason(outcome),
            "queued_at": ended + timedelta(seconds=delay),
            "worker": None,
            "lease_expires_at": None,
            "last_seq": repo.next_log_seq(),  # the notice below
        }
    else:
        values = _final(outcome, ended)
    moved = await repo.transition(
        session,
        row.id,
        ExecutionState.RETRYING if retry else outcome.state,
        expected=(ExecutionState.RUNNING,),
        holder=holder,
        lease_expired_before=lease_expired_before,
        values={**values, "cost_micros": cost},
    )
    if moved is None:
        return None
    if row.started_at is not None:
        await billing_repo.record_run(session, row.id, holder[1], holder[0], row.started_at, ended)
    if not retry:
        return False
    reason = values["retry_reason"]
    notice = domain.LogSegment(
        moved.last_seq,
        moved.attempt + 1,
        domain.Stream.SYSTEM,
        ended,
        f"attempt {moved.attempt + 1}/{moved.max_retries + 1} after {reason} (in {delay:g}s)\n",
        1,
    )
    await log_repo.append(session, row.id, [notice])
    logger.warning(
        "retrying", extra={"action": "execution_retrying", "execution_id": row.id, "reason": reason}
    )
    return True


def retry_reason(outcome: domain.Outcome) -> str:
    """What failed, on one line: ``infrastructure: the worker failed: …``. A cause may span
    lines (a tool's output); as a log line the parts after the first would stand alone."""
    assert outcome.failure_class is not None
    cause = " | ".join(part.strip() for part in (outcome.cause or "").splitlines() if part.strip())
    return f"{outcome.failure_class.value}: {cause or 'no cause recorded'}"


def _final(outcome: domain.Outcome, ended: datetime) -> dict[str, Any]:
    """The columns an attempt's final outcome sets."""
    reads = outcome.reads
    values: dict[str, Any] = {
        "exit_code": outcome.exit_code,
        "failure_class": outcome.failure_class.value if outcome.failure_class else None,
        "cause": outcome.cause,
        "hint": outcome.hint,
        "finished_at": ended,  # the instant the cost was computed for
        "lease_expires_at": None,
        "reads": None
        if reads is None
        else {"read": list(reads.read), "written": list(reads.written)},
        "output_dirs": list(outcome.output_dirs),
        "network_used": outcome.network_used,
    }
    if outcome.packages:
        values["packages"] = list(outcome.packages)
    if outcome.python_version:
        values["python_version"] = outcome.python_version
    return values
