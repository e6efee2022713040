"""LocalExecutor: a bounded number of slots on this host, each running the runner pipeline."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from rgrid import domain
from rgrid.domain import ExecutionState, FailureClass
from rgrid.executor import DoneCallback, Placement
from rgrid.runner import ControlPlane, RunnerConfig
from rgrid.runner.pipeline import remove_abandoned, run_execution

logger = logging.getLogger(__name__)


class LocalExecutor:
    name = "local"
    remote = False
    env_builds = 0  # the server's own environment cache counts them

    def __init__(self, *, slots: int, config: RunnerConfig) -> None:
        self.slots = slots
        self._config = config
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._cancels: dict[str, asyncio.Event] = {}
        self.started = 0  # executions this executor has started (cache hits never reach it)
        remove_abandoned(config.work_root)

    async def open(self) -> None:
        return None

    def free_slots(self) -> int:
        return self.slots - len(self._tasks)

    def place(self) -> list[Placement]:
        return []  # in the dispatcher's own worker

    def workers(self, now: datetime) -> list[domain.Worker]:  # noqa: ARG002 (the protocol's)
        return []  # the dispatcher's own worker is its record

    def running(self) -> list[str]:
        return list(self._tasks)

    def start(self, spec: domain.ExecutionSpec, plane: ControlPlane, on_done: DoneCallback) -> None:
        cancel = asyncio.Event()
        self.started += 1
        self._cancels[spec.execution_id] = cancel
        self._tasks[spec.execution_id] = asyncio.create_task(
            self._run(spec, plane, on_done, cancel), name=f"run-{spec.execution_id}"
        )

    async def _run(
        self,
        spec: domain.ExecutionSpec,
        plane: ControlPlane,
        on_done: DoneCallback,
        cancel: asyncio.Event,
    ) -> None:
        try:
            outcome = await run_execution(spec, plane, self._config, cancel)
        except Exception as exc:  # the runner's own failure: report it, never lose the execution
            logger.exception(
                "runner failed",
                extra={"action": "runner_failed", "execution_id": spec.execution_id},
            )
            outcome = domain.Outcome(
                ExecutionState.FAILED,
                domain.EXIT_RGRID_FAILURE,
                FailureClass.INFRASTRUCTURE,
                cause=f"the worker failed: {type(exc).__name__}: {exc}",
            )
        finally:
            self._tasks.pop(spec.execution_id, None)
            self._cancels.pop(spec.execution_id, None)
        await _report(spec, outcome, on_done)

    def cancel(self, execution_id: str) -> bool:
        event = self._cancels.get(execution_id)
        if event is None:
            return False
        event.set()
        return True

    async def close(self) -> None:
        for event in self._cancels.values():
            event.set()
        if self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)


async def _report(
    spec: domain.ExecutionSpec, outcome: domain.Outcome, on_done: DoneCallback
) -> None:
    """Hand the outcome over. If recording it fails (say, an output the store rejects), the
    execution still ends now, failed without its outputs, instead of an exception nobody
    retrieves and a lease left to expire."""
    try:
        await on_done(spec, outcome)
        return
    except Exception as exc:
        logger.exception(
            "recording the outcome failed",
            extra={"action": "outcome_failed", "execution_id": spec.execution_id},
        )
        failed = domain.Outcome(
            ExecutionState.FAILED,
            domain.EXIT_RGRID_FAILURE,
            FailureClass.INFRASTRUCTURE,
            cause=f"the grid could not record the outcome: {type(exc).__name__}: {exc}",
        )
    try:
        await on_done(spec, failed)
    except Exception:  # the store itself is down: the lease expiring is all that is left
        logger.exception(
            "recording the failure failed",
            extra={"action": "outcome_failed", "execution_id": spec.execution_id},
        )
