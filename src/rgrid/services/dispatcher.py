"""The dispatcher: claims queued executions for the executor, keeps their leases, records outcomes.

Four loops run in the server: claim (woken on a submit to any server of the database, see
``store.signals``, else every ``POLL_S``), lease renewal
(every third of the lease; also notices cancel requests made through another server),
recovery (running executions whose lease expired become ``worker_lost``), and the retention
janitor (deletes blobs past the retention period that nothing live references).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from rgrid import domain, errors, store
from rgrid.domain import ArtifactKind, ExecutionState, FailureClass
from rgrid.executor import Executor
from rgrid.money import slot_cost
from rgrid.services import Grid, billing, blobs, retention, utcnow, workers
from rgrid.settings import ServerSettings
from rgrid.storage import blob_key
from rgrid.store import billing as billing_repo
from rgrid.store import blobs as blob_repo
from rgrid.store import executions as repo
from rgrid.store import logs as log_repo
from rgrid.store import workers as worker_repo
from rgrid.store.models import ExecutionRow
from rgrid.store.signals import WorkSignal
from rgrid.store.signals.local import InProcessWorkSignal

logger = logging.getLogger(__name__)

POLL_S = 1.0
RECOVERY_EVERY_S = 2.0


class GridControlPlane:
    """The runner's view of the grid when it runs in the server's own process, for one attempt:
    once another attempt holds the execution (this one's lease expired), its logs and outputs
    are refused (``errors.LeaseLost``)."""

    def __init__(self, grid: Grid, spec: domain.ExecutionSpec, worker: str) -> None:
        self._grid = grid
        self._spec = spec
        self._worker = worker

    def _stale(self, what: str) -> errors.LeaseLost:
        logger.warning(
            "a stale attempt's %s refused",
            what,
            extra={
                "action": "stale_attempt_refused",
                "execution_id": self._spec.execution_id,
                "attempt": self._spec.attempt,
            },
        )
        return errors.LeaseLost(
            f"attempt {self._spec.attempt} of {self._spec.execution_id} no longer holds it"
        )

    async def fetch_input(self, ref: domain.FileRef, dest: Path) -> None:
        """The input's bytes, verified: a blob gone from storage or not matching its sha256
        is ``BlobCorrupt`` and marked missing, so the next `rgrid run` uploads it again."""
        from rgrid.runner.workdir import sha256_file

        account = self._spec.account_id
        what = f"input {ref.path!r}"
        try:
            await self._grid.storage.copy_to_file(blob_key(account, ref.sha256), dest)
        except errors.NotFound:
            raise await blobs.lose_blob(self._grid, account, ref.sha256, what) from None
        if await asyncio.to_thread(sha256_file, dest) != ref.sha256:
            dest.unlink(missing_ok=True)
            raise await blobs.lose_blob(self._grid, account, ref.sha256, what)

    async def copy_inputs(self, placed: Sequence[tuple[domain.FileRef, Path]]) -> list[bool]:
        account = self._spec.account_id
        blobs = [(blob_key(account, ref.sha256), ref.sha256, dest) for ref, dest in placed]
        return await self._grid.storage.copy_to_files(blobs)

    async def store_output(self, path: Path, rel: str) -> domain.FileRef:
        from rgrid.runner.workdir import sha256_file

        spec = self._spec
        async with store.transaction(self._grid.sessions) as session:
            if not await repo.holds(session, spec.execution_id, self._worker, spec.attempt):
                raise self._stale("output")

        sha = await asyncio.to_thread(sha256_file, path)
        key = blob_key(self._spec.account_id, sha)
        # the work directory is discarded after collection: the file is given away, and on the
        # storage's disk renamed into place without a second copy or hash
        info = await self._grid.storage.put_file(key, path, sha256=sha, move=True, verified=True)
        async with store.transaction(self._grid.sessions) as session:
            await blob_repo.record_blob(session, self._spec.account_id, sha, info.size, utcnow())
        return domain.FileRef(rel, sha, info.size)

    async def append_logs(self, segments: list[domain.LogSegment]) -> None:
        spec = self._spec
        async with store.transaction(self._grid.sessions) as session:
            # guarded by the attempt first: a stale one appends nothing
            last = segments[-1].last_seq
            if not await repo.advance_log(
                session, spec.execution_id, self._worker, spec.attempt, last
            ):
                raise self._stale("log lines")
            await log_repo.append(session, spec.execution_id, segments)
        self._grid.notifier.notify(spec.execution_id)


def _tree_lost() -> domain.Outcome:
    return domain.Outcome(
        ExecutionState.FAILED,
        domain.EXIT_RGRID_FAILURE,
        FailureClass.INPUT_ERROR,
        cause="its project tree is no longer kept on the grid (a file of it was lost)",
        hint="run it again: the CLI sends the tree anew",
    )


class Dispatcher:
    def __init__(self, grid: Grid, executor: Executor, signal: WorkSignal | None = None) -> None:
        self._grid = grid
        self.executor = executor
        self._wake = asyncio.Event()
        # reaches the other servers of the database too, so an idle one starts a submit at once
        self._signal = signal or InProcessWorkSignal()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._disk_warned = False
        # unique per server process: two servers on one host must not renew each other's leases
        self._worker = f"{grid.settings.worker_name}:{os.getpid()}"
        self._started = utcnow()  # this worker's billing periods run back to back from here
        self._registered = False
        self._lease = timedelta(seconds=grid.settings.lease_s)
        grid.wake_dispatcher = self._work_queued
        grid.cancel_local = executor.cancel

    def _work_queued(self) -> None:
        self._wake.set()
        self._signal.publish()

    def start(self) -> None:
        self._signal.start(self._wake.set)
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name="dispatcher-claim"),
            asyncio.create_task(self._lease_loop(), name="dispatcher-lease"),
            asyncio.create_task(self._recovery_loop(), name="dispatcher-recovery"),
            asyncio.create_task(self._janitor_loop(), name="retention-janitor"),
            asyncio.create_task(self._billing_loop(), name="billing"),
        ]

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._signal.close()
        await self.executor.close()
        try:
            await workers.stopped(self._grid, self._worker)
        except Exception:  # the database is gone: the heartbeat running out says it instead
            logger.exception("could not record the worker's stop", extra={"action": "worker_stop"})

    async def _register(self) -> None:
        """Put this server's worker on record (slots, price); until that succeeds (a database
        down at start) every heartbeat tries again, and costs use the server's settings."""
        local = workers.local(
            self._grid, self._worker, self.executor.name, self.executor.slots, self._started
        )
        try:
            await workers.register(self._grid, local)
        except Exception:
            logger.exception("registering the worker failed", extra={"action": "worker_register"})
        else:
            self._registered = True

    async def _claim_loop(self) -> None:
        await self._register()  # before it claims anything
        while True:
            self._wake.clear()
            try:
                while (
                    self.executor.free_slots() > 0
                    and self._room_on_disk()
                    and await self._claim_one()
                ):
                    pass
            except Exception:
                logger.exception("claim failed", extra={"action": "claim_failed"})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_S)

    def _room_on_disk(self) -> bool:
        """Whether the grid's disk has more than its reserve free: below it nothing new starts
        (what is queued waits), so a full disk never fails the database or an upload first."""
        reserve = self._grid.settings.disk_reserve_bytes
        try:
            stats = os.statvfs(self._grid.settings.home)
        except OSError:
            return True
        free = stats.f_bavail * stats.f_frsize
        if free >= reserve:
            self._disk_warned = False
            return True
        if not self._disk_warned:
            logger.warning(
                "%d MiB free on the grid's disk, under its reserve of %d MiB: starting nothing",
                free // 1024**2,
                reserve // 1024**2,
                extra={"action": "disk_reserve_reached"},
            )
            self._disk_warned = True
        return False

    async def _claim_one(self) -> bool:
        async with store.transaction(self._grid.sessions) as session:
            row = await repo.claim_next(
                session, worker=self._worker, now=utcnow(), lease_s=self._lease.total_seconds()
            )
            if row is None:
                return False
            # The claim took effect when its UPDATE got the write lock, possibly after waiting
            # for the commit that freed the slot: stamp the start from then, so a batch item's
            # started_at is never before the finished_at of the item whose slot it took.
            row.started_at = utcnow()
            row.lease_expires_at = row.started_at + self._lease
            inputs = await blob_repo.list_files(session, row.id, ArtifactKind.INPUT)
            tree = None
            if row.tree_sha256 is not None:
                tree = await self._grid.trees.get(session, row.account_id, row.tree_sha256)
        spec = domain.ExecutionSpec(
            execution_id=row.id,
            account_id=row.account_id,
            script=row.script,
            args=tuple(row.args),
            env=self._grid.secrets.open(row.env_ciphertext),
            inputs=tuple(inputs),
            timeout_s=row.timeout_s,
            memory_bytes=row.memory_bytes,
            disk_bytes=row.disk_bytes,
            cwd=row.cwd,
            argv0=row.argv0,
            mount_roots=tuple((row.mounts or {}).get("roots", ())),
            named_outside=tuple((row.mounts or {}).get("named", ())),
            network=row.network,
            attempt=row.attempt,
            log_seq_start=row.last_seq,
            requirements=tuple(row.requirements or ()),
            # the minor version picks the interpreter; a finished attempt recorded the full one
            python=".".join((row.python_version or "").split(".")[:2]) or None,
            stdin=(
                domain.FileRef(domain.STDIN_PATH, row.stdin_sha256, row.stdin_size or 0)
                if row.stdin_sha256 is not None
                else None
            ),
            tree=tree,
        )
        logger.info("claimed", extra={"action": "execution_claimed", "execution_id": row.id})
        self._grid.notifier.notify(row.id)
        if row.tree_sha256 is not None and tree is None:
            # its files were found lost since it was submitted (``blobs.lose_blob``)
            await self._finish(spec, _tree_lost())
            return True
        self.executor.start(spec, GridControlPlane(self._grid, spec, self._worker), self._finish)
        return True

    async def _finish(self, spec: domain.ExecutionSpec, outcome: domain.Outcome) -> None:
        await record_outcome(self._grid, self._worker, spec, outcome)
        self._wake.set()

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(self._lease.total_seconds() / 3)
            if not self._registered:
                await self._register()
            try:
                await workers.heartbeat(self._grid, self._worker, utcnow())
            except Exception:
                logger.exception("heartbeat failed", extra={"action": "heartbeat_failed"})
            for execution_id in self.executor.running():
                try:
                    async with store.transaction(self._grid.sessions) as session:
                        cancel = await repo.renew_lease(
                            session, execution_id, self._worker, utcnow() + self._lease
                        )
                except Exception:
                    logger.exception("lease renewal failed", extra={"action": "lease_failed"})
                    continue
                if cancel is None or cancel:
                    self.executor.cancel(execution_id)

    async def _recovery_loop(self) -> None:
        while True:
            try:
                await workers.mark_stale(self._grid, utcnow())
                await self.recover_expired()
            except Exception:
                logger.exception("recovery failed", extra={"action": "recovery_failed"})
            await asyncio.sleep(RECOVERY_EVERY_S)

    async def _billing_loop(self) -> None:
        every = max(0.25, min(self._grid.settings.billing_period_s / 4, 60.0))
        while True:
            await asyncio.sleep(every)
            try:
                await billing.close_periods(self._grid, self._worker, self._started, utcnow())
            except Exception:
                logger.exception("billing failed", extra={"action": "billing_failed"})

    async def _janitor_loop(self) -> None:
        while True:
            await asyncio.sleep(retention.sweep_every_s(self._grid))
            try:
                await retention.sweep(self._grid)
            except Exception:
                logger.exception("retention sweep failed", extra={"action": "sweep_failed"})

    async def recover_expired(self) -> int:
        """Settle running executions whose worker is gone (``recover_expired``)."""
        return await recover_expired(self._grid, self._worker, utcnow())


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
            lost = _worker_lost("the worker running it stopped renewing its lease")
            assert row.worker is not None
            holder = (row.worker, row.attempt)
            # guarded: a lease renewed meanwhile, or an outcome recorded, is left alone
            expired = now if row.id in seen else None
            if await _settle(session, row, lost, grid.settings, holder, expired) is not None:
                settled.append(row.id)
    for execution_id in settled:
        logger.warning(
            "lease expired", extra={"action": "worker_lost", "execution_id": execution_id}
        )
        grid.notifier.notify(execution_id)
    return len(settled)


async def record_outcome(
    grid: Grid, worker: str, spec: domain.ExecutionSpec, outcome: domain.Outcome
) -> bool:
    """Record an attempt's outcome, only if that attempt of ``worker`` still holds the
    execution (a stale one, whose lease expired and which another attempt took over, is refused
    and logged); whether it was recorded."""
    async with store.transaction(grid.sessions) as session:
        row = await repo.get_row(session, spec.execution_id)
        retried = None
        if row is not None:
            if outcome.state is ExecutionState.CANCELLED and not row.cancel_requested:
                outcome = _worker_lost("the grid was stopped while the script ran")
            retried = await _settle(session, row, outcome, grid.settings, (worker, spec.attempt))
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
    grid.notifier.notify(spec.execution_id)
    return True


def _alive(worker: str | None) -> bool:
    """Whether the server process named in a worker id ``host:pid`` still exists here."""
    pid = (worker or "").rpartition(":")[2]
    if not pid.isdigit():
        return True  # not one of ours: only its lease can tell
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _worker_lost(cause: str) -> domain.Outcome:
    return domain.Outcome(
        ExecutionState.FAILED,
        domain.EXIT_RGRID_FAILURE,
        FailureClass.WORKER_LOST,
        cause=cause,
        hint="not caused by the script; `rgrid retry ID` runs it again",
    )


RETRY_BACKOFF_S = 1.0
RETRY_BACKOFF_MAX_S = 30.0


async def _settle(
    session: AsyncSession,
    row: ExecutionRow,
    outcome: domain.Outcome,
    settings: ServerSettings,
    holder: tuple[str, int],
    lease_expired_before: datetime | None = None,
) -> bool | None:
    """Record the outcome of ``holder``'s attempt (worker, attempt): a transient failure with
    retries left is queued again (state ``retrying``, after a backoff) with a log line saying
    so; anything else is final. Every attempt's run time is charged (SPEC §11). Returns whether
    it will be retried; None, with nothing recorded, when that attempt no longer holds it."""
    ended = utcnow()
    cost = row.cost_micros or 0
    if row.started_at is not None:
        run_us = max(0, (ended - row.started_at) // timedelta(microseconds=1))
        price, slots = workers.pricing(await worker_repo.get(session, holder[0]), settings)
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
            "last_seq": ExecutionRow.last_seq + 1,  # the notice below
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
    }
    if outcome.packages:
        values["packages"] = list(outcome.packages)
    if outcome.python_version:
        values["python_version"] = outcome.python_version
    return values
