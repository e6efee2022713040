"""In-process notification that an execution changed (new log lines or a new state).

Followers wait here instead of polling the database in a tight loop; they still re-read the
store after every wake-up (or every ``MAX_WAIT_S``), so a change made by another server process
is seen too, just later.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterator

MAX_WAIT_S = 0.5


class Listener:
    """Notifications for one execution, counted from the moment ``Notifier.listening`` began:
    one that came while the follower was reading the store is not lost."""

    def __init__(self, event: asyncio.Event) -> None:
        self._event = event

    async def wait(self, timeout: float) -> None:
        """Return once notified (at once if that happened already since the last wait), or
        after ``min(timeout, MAX_WAIT_S)``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(timeout, MAX_WAIT_S)):
                await self._event.wait()
        self._event.clear()


class Notifier:
    def __init__(self) -> None:
        self._waiters: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        #: also tell the server's other processes (set by the main process of several)
        self.forward: Callable[[str], None] | None = None

    def notify(self, execution_id: str) -> None:
        for event in self._waiters.get(execution_id, ()):
            event.set()
        if self.forward is not None:
            self.forward(execution_id)

    @contextlib.contextmanager
    def listening(self, execution_id: str) -> Iterator[Listener]:
        """Listen for this execution's notifications while the block runs: start before
        reading the store, then wait, so a change made in between wakes the wait at once."""
        event = asyncio.Event()
        self._waiters[execution_id].add(event)
        try:
            yield Listener(event)
        finally:
            waiters = self._waiters[execution_id]
            waiters.discard(event)
            if not waiters:
                del self._waiters[execution_id]
