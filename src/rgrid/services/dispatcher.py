"""The dispatcher: claims queued executions for the executor and keeps their leases.

Three loops run in the server: claim (woken on a submit to any server of the database, see
``store.signals``, else every ``POLL_S``), lease renewal (every third of the lease, with the
worker's heartbeat; it also notices cancel requests made through another server), and
recovery (``services.recovery``). What an attempt reports is recorded by
``services.outcomes``; what it asks of the grid while it runs is ``services.plane``; the
janitor and the billing loop are ``services.housekeeping``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from datetime import datetime, timedelta

from rgrid import domain, store, tasks
from rgrid.domain import ArtifactKind
from rgrid.executor import Executor, Placement
from rgrid.services import Grid, outcomes, plane, recovery, utcnow, workers
from rgrid.store import blobs as blob_repo
from rgrid.store import executions as repo
from rgrid.store.signals import WorkSignal
from rgrid.store.signals.local import InProcessWorkSignal

logger = logging.getLogger(__name__)

POLL_S = 1.0
#: after a work signal, cancels asked through another server are looked for at most this often
CANCEL_CHECK_GAP_S = 0.5
RECOVERY_EVERY_S = 2.0


class Dispatcher:
    def __init__(self, grid: Grid, executor: Executor, signal: WorkSignal | None = None) -> None:
        self._grid = grid
        self.executor = executor
        self._wake = asyncio.Event()
        self._claiming = asyncio.Lock()  # one claimer at a time: slots are counted, then filled
        self._signalled = asyncio.Event()  # another process published: maybe a cancel
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
        #: the executions claimed here whose outcome is not recorded yet, each with the worker
        #: holding it (ours, or the executor's node): their leases are kept from here
        self._in_flight: dict[str, str] = {}
        #: each in-flight execution as its claim returned it (its outcome reads it from here)
        self._claimed: dict[str, domain.Execution] = {}
        grid.wake_dispatcher = self._work_queued
        grid.cancel_local = executor.cancel

    @property
    def worker(self) -> str:
        """This server's worker id (``host:pid``), as executions record it."""
        return self._worker

    @property
    def started(self) -> datetime:
        return self._started

    def _work_queued(self) -> None:
        self._wake.set()
        self._signal.publish()

    def start(self) -> None:
        self._signal.start(self._on_signal)
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name="dispatcher-claim"),
            asyncio.create_task(self._lease_loop(), name="dispatcher-lease"),
            asyncio.create_task(self._cancel_loop(), name="dispatcher-cancels"),
            asyncio.create_task(self._recovery_loop(), name="dispatcher-recovery"),
        ]

    async def close(self) -> None:
        self._closing = True
        await tasks.cancel_and_wait(*self._tasks)
        await self._signal.close()
        await self.executor.close()
        try:
            await workers.stopped(self._grid, self._worker)
        except Exception:  # the database is gone: the heartbeat running out says it instead
            logger.exception("could not record the worker's stop", extra={"action": "worker_stop"})

    def billed_workers(self) -> list[tuple[str, datetime]]:
        """The workers whose billing periods this server closes, with their start: its own,
        or the executor's nodes (their records keep their first start)."""
        if self.executor.remote:
            return [(node.id, node.started_at) for node in self.executor.workers(utcnow())]
        return [(self._worker, self._started)]

    async def _register(self) -> None:
        """Put this server's worker on record (slots, price); until that succeeds (a database
        down at start) every heartbeat tries again, and costs use the server's settings. A
        server whose executor runs scripts elsewhere is no worker and registers nothing."""
        if self.executor.remote:
            self._registered = True
            return
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
            await self._fill_slots()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_S):
                    await self._wake.wait()

    async def _fill_slots(self) -> None:
        """Claim while a slot is free (and the disk has room) and something waits."""
        try:
            async with self._claiming:
                while (
                    not self._closing
                    and self.executor.free_slots() > 0
                    and self._room_on_disk()
                    and await self._claim_one()
                ):
                    pass
        except Exception:
            logger.exception("claim failed", extra={"action": "claim_failed"})

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
        # Our own worker runs anything; an executor's nodes each claim what they can run,
        # so a node without an execution's Python never gets it while another node has room.
        candidates: list[Placement | None] = (
            list(self.executor.place()) if self.executor.remote else [None]
        )
        row = None
        # brief: the claim's UPDATE by its index, the execution's inputs and tree by their keys
        async with store.transaction(self._grid.sessions, brief=True) as session:
            for placement in candidates:
                holder = placement.worker if placement else self._worker
                row = await repo.claim_next(
                    session,
                    worker=holder,
                    now=utcnow(),
                    lease_s=self._lease.total_seconds(),
                    clock=utcnow,
                    pythons=placement.pythons if placement else None,
                )
                if row is not None:
                    break
            if row is None:
                return False
            inputs = await blob_repo.list_files(session, row.id, ArtifactKind.INPUT)
            tree = None
            if row.tree_digest is not None:
                tree = await self._grid.trees.get(session, row.account_id, row.tree_digest)
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
            mount_roots=row.mount_roots,
            named_outside=row.named_outside,
            network=row.network,
            attempt=row.attempt,
            log_seq_start=row.last_seq,
            requirements=tuple(row.requirements or ()),
            # the minor version picks the interpreter; a finished attempt recorded the full one
            python=".".join((row.python_version or "").split(".")[:2]) or None,
            stdin=(
                domain.FileRef(domain.STDIN_PATH, row.stdin_digest, row.stdin_size or 0)
                if row.stdin_digest is not None
                else None
            ),
            tree=tree,
            worker=holder,
            time_zone=(row.surroundings or {}).get("time_zone"),
            locale=dict((row.surroundings or {}).get("locale") or {}),
            terminal=(row.surroundings or {}).get("terminal"),
        )
        logger.info("claimed", extra={"action": "execution_claimed", "execution_id": row.id})
        self._grid.notifier.notify(row.id)
        self._in_flight[row.id] = holder
        self._claimed[row.id] = row
        if row.tree_digest is not None and tree is None:
            # its files were found lost since it was submitted (``blobs.lose_blob``)
            await self._record(spec, outcomes.tree_lost())  # the loop claiming goes on
            return True
        self.executor.start(spec, plane.GridControlPlane(self._grid, spec, holder), self._finish)
        return True

    async def _finish(self, spec: domain.ExecutionSpec, outcome: domain.Outcome) -> None:
        """An execution's end, as its executor reports it: its outcome recorded, and its slot
        taken again at once, by this task (the outcome may have freed a batch's place too),
        not after the claim loop's turn comes on a busy event loop."""
        await self._record(spec, outcome)
        await self._fill_slots()
        self._wake.set()

    async def _record(self, spec: domain.ExecutionSpec, outcome: domain.Outcome) -> None:
        holder = spec.worker or self._worker
        # its own worker's price is what it registered: no read of the record per outcome
        own = (self._grid.settings.hourly_price_micros, self.executor.slots)
        pricing = own if holder == self._worker else None
        claimed = self._claimed.get(spec.execution_id)
        try:
            await outcomes.record_outcome(
                self._grid, holder, spec, outcome, pricing=pricing, claimed=claimed
            )
        finally:
            # in flight until here: its lease is kept while its outcome is being recorded
            self._in_flight.pop(spec.execution_id, None)
            self._claimed.pop(spec.execution_id, None)

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(self._lease.total_seconds() / 3)
            if not self._registered:
                await self._register()
            try:
                if not self.executor.remote:
                    await workers.heartbeat(self._grid, self._worker, utcnow())
                await workers.seen(self._grid, self.executor.workers(utcnow()))
            except Exception:
                logger.exception("heartbeat failed", extra={"action": "heartbeat_failed"})
            for execution_id, holder in list(self._in_flight.items()):
                # Held for the executor's node too: while the node runs it (Ray reports a
                # task whose node died as failed), the lease is kept from here.
                try:
                    until = utcnow() + self._lease
                    cancel = await plane.renew_lease(self._grid, execution_id, holder, until)
                except Exception:
                    logger.exception("lease renewal failed", extra={"action": "lease_failed"})
                    continue
                if cancel is None or cancel:
                    self.executor.cancel(execution_id)

    def _on_signal(self) -> None:
        self._wake.set()
        self._signalled.set()

    async def _cancel_loop(self) -> None:
        """A cancel asked through another process of the server (``--api-processes``) or
        another server comes with a work signal: stop the script then, not at the next lease
        renewal (every third of the lease)."""
        while True:
            await self._signalled.wait()
            self._signalled.clear()
            running = list(self.executor.running())
            try:
                cancelled = await plane.cancels_asked(self._grid, running) if running else []
            except Exception:
                logger.exception("cancel check failed", extra={"action": "cancel_check_failed"})
                cancelled = []
            for execution_id in cancelled:
                self.executor.cancel(execution_id)
            await asyncio.sleep(CANCEL_CHECK_GAP_S)

    async def _recovery_loop(self) -> None:
        while True:
            try:
                await workers.mark_stale(self._grid, utcnow())
                await self.recover_expired()
            except Exception:
                logger.exception("recovery failed", extra={"action": "recovery_failed"})
            await asyncio.sleep(RECOVERY_EVERY_S)

    async def recover_expired(self) -> int:
        """Settle running executions whose worker is gone (``recover_expired``); those in
        flight here are not gone, whatever their lease says."""
        return await recovery.recover_expired(
            self._grid, self._worker, utcnow(), held=self._in_flight
        )
