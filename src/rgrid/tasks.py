"""Stopping the grid's background tasks without losing a cancel.

``task.cancel()`` then ``with suppress(CancelledError): await task`` also swallows a cancel of
the caller itself, made while it waits (a shutdown given up on, a timeout around it): the
caller then goes on as if nothing happened, and its own caller waits on. Here the caller's
cancel goes through, and the tasks' own cancels end there.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

logger = logging.getLogger(__name__)


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel these tasks (None: none) and wait until each has ended. A task that ended with
    an error of its own is logged, not raised: the caller is closing and goes on."""
    live = [task for task in tasks if task is not None]
    if not live:
        return
    for task in live:
        task.cancel()
    await asyncio.wait(live)
    for task in live:
        if not task.cancelled() and (error := task.exception()) is not None:
            logger.error(
                "a task ended with an error", exc_info=error, extra={"action": "task_failed"}
            )
