"""In-process notification that an execution changed (new log lines or a new state).

Followers wait here instead of polling the database in a tight loop; they still re-read the
store after every wake-up (or every ``MAX_WAIT_S``), so a change made by another server process
is seen too, just later.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict

MAX_WAIT_S = 0.5


class Notifier:
    def __init__(self) -> None:
        self._waiters: defaultdict[str, set[asyncio.Event]] = defaultdict(set)

    def notify(self, execution_id: str) -> None:
        for event in self._waiters.get(execution_id, ()):
            event.set()

    async def wait(self, execution_id: str, timeout: float) -> None:
        """Return on the next ``notify`` for this execution, or after ``min(timeout, MAX_WAIT_S)``."""
        event = asyncio.Event()
        self._waiters[execution_id].add(event)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(timeout, MAX_WAIT_S))
        finally:
            waiters = self._waiters[execution_id]
            waiters.discard(event)
            if not waiters:
                del self._waiters[execution_id]
