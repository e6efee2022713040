"""In-process notification that an execution changed (new log lines or a new state), or that
an item of a batch ended.

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
    """Notifications for one key, counted from the moment ``Notifier.listening`` began: one
    that came while the follower was reading the store is not lost."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        #: notifications so far (a batch's follower counts the items that ended)
        self.received = 0

    def notified(self) -> None:
        self.received += 1
        self._event.set()

    async def wait(self, timeout: float) -> None:
        """Return once notified (at once if that happened already since the last wait), or
        after ``min(timeout, MAX_WAIT_S)``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(timeout, MAX_WAIT_S)):
                await self._event.wait()
        self._event.clear()


class Notifier:
    def __init__(self) -> None:
        self._waiters: defaultdict[str, set[Listener]] = defaultdict(set)
        #: also tell the server's other processes (set by the main process of several)
        self.forward: Callable[[str], None] | None = None

    def notify(self, key: str, *, ended_in_batch: str | None = None) -> None:
        """``key``: an execution's id (or a ``batch_key``). ``ended_in_batch``: the execution
        ended for good and was an item of this batch, whose followers are told too."""
        for listener in self._waiters.get(key, ()):
            listener.notified()
        if self.forward is not None:
            self.forward(key)
        if ended_in_batch is not None:
            self.notify(batch_key(ended_in_batch))

    @contextlib.contextmanager
    def listening(self, key: str) -> Iterator[Listener]:
        """Listen for this key's notifications while the block runs: start before reading the
        store, then wait, so a change made in between wakes the wait at once."""
        listener = Listener()
        self._waiters[key].add(listener)
        try:
            yield listener
        finally:
            waiters = self._waiters[key]
            waiters.discard(listener)
            if not waiters:
                del self._waiters[key]


def batch_key(batch_id: str) -> str:
    """The key a batch's followers listen on: notified once for each of its items that ends
    for good (not for an attempt that is retried)."""
    return f"batch/{batch_id}"
