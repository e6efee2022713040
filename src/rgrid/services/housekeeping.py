"""The grid's background work besides running executions: the retention janitor (deletes
blobs past the retention period that nothing live references) and the billing loop (closes
the billing periods of this server's worker and splits each one's price, SPEC §11)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from rgrid import tasks
from rgrid.services import Grid, billing, consoles, retention, utcnow

logger = logging.getLogger(__name__)


class Housekeeping:
    """The janitor and the billing loop of one server: ``billed`` names the workers whose
    periods it closes, each with the start its periods run back to back from."""

    def __init__(self, grid: Grid, billed: Callable[[], list[tuple[str, datetime]]]) -> None:
        self._grid = grid
        self._billed = billed
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._janitor_loop(), name="retention-janitor"),
            asyncio.create_task(self._billing_loop(), name="billing"),
        ]

    async def close(self) -> None:
        await tasks.cancel_and_wait(*self._tasks)

    async def _billing_loop(self) -> None:
        every = max(0.25, min(self._grid.settings.billing_period_s / 4, 60.0))
        while True:
            await asyncio.sleep(every)
            for worker, started in self._billed():
                try:
                    await billing.close_periods(self._grid, worker, started, utcnow())
                except Exception:
                    logger.exception("billing failed", extra={"action": "billing_failed"})

    async def _janitor_loop(self) -> None:
        while True:
            await asyncio.sleep(retention.sweep_every_s(self._grid))
            try:
                await retention.sweep(self._grid)
                await consoles.forget_ended(self._grid)
            except Exception:
                logger.exception("retention sweep failed", extra={"action": "sweep_failed"})
