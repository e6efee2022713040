"""Ship a script's output to the grid in batches, numbered, bounded, and capped.

The sandbox hands over blocks of lines as they are read; each block becomes one segment
(numbered lines sharing a stream and a time) in a buffer flushed every ``FLUSH_INTERVAL_S`` or
when ``FLUSH_LINES`` lines wait, so a chatty script costs one write per batch rather than one
per line. A full buffer makes the reader wait (back-pressure).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from datetime import UTC, datetime

from rgrid import domain
from rgrid.runner import ControlPlane

_STREAMS = {stream.value: stream for stream in domain.Stream}
FLUSH_INTERVAL_S = 0.05
FLUSH_LINES = 5_000
MAX_BUFFERED_LINES = 200_000
STDERR_TAIL_LINES = 50


class LogShipper:
    """Numbers lines from ``start_seq + 1`` and persists them through ``plane.append_logs``."""

    def __init__(
        self, plane: ControlPlane, *, attempt: int, start_seq: int, max_bytes: int
    ) -> None:
        self._plane = plane
        self._attempt = attempt
        self._seq = start_seq
        self._max_bytes = max_bytes
        self._bytes = 0
        self._dropped_lines = 0
        self._dropped_bytes = 0
        self._buffer: list[domain.LogSegment] = []
        self._buffered_lines = 0
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def last_seq(self) -> int:
        return self._seq

    async def __aenter__(self) -> LogShipper:
        self._task = asyncio.create_task(self._flush_periodically())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            # Stop the flusher between batches: cancelling it inside ``append_logs`` would lose
            # the batch it had already taken out of the buffer (the script's last lines).
            self._closing = True
            self._wake.set()
            await self._task
        if self._dropped_lines:
            self._add(
                domain.Stream.SYSTEM,
                datetime.now(UTC),
                f"[rgrid] log limit of {self._max_bytes} bytes reached: {self._dropped_lines} "
                f"lines ({self._dropped_bytes} bytes) were not stored\n",
                1,
            )
        await self.flush()

    async def on_output(self, stream: str, blocks: list[bytes]) -> None:
        """The sandbox's output callback: the blocks of one read, stamped with its time."""
        kind = _STREAMS[stream]
        now = datetime.now(UTC)
        for block in blocks:
            text = block.decode("utf-8", errors="replace")
            count = text.count("\n") if text.endswith("\n") else 1
            if kind is domain.Stream.STDERR:
                self.stderr_tail.extend(domain.segment_lines(text)[-STDERR_TAIL_LINES:])
            # Once the cap is hit everything after is dropped: the log keeps no gaps.
            if self._dropped_lines or self._bytes + len(block) > self._max_bytes:
                self._dropped_lines += count
                self._dropped_bytes += len(block)
                continue
            self._bytes += len(block)
            self._add(kind, now, text, count)
        if self._buffered_lines >= FLUSH_LINES:
            self._wake.set()
        if self._buffered_lines >= MAX_BUFFERED_LINES:
            await self.flush()

    async def setup(self, text: str) -> None:
        """A line of the environment build (uv's output), marked as setup."""
        line = text if text.endswith("\n") else text + "\n"
        self._add(domain.Stream.SETUP, datetime.now(UTC), line, 1)

    def system(self, text: str) -> None:
        """An rgrid line about the execution (shown on stderr, marked as rgrid's)."""
        line = text if text.endswith("\n") else text + "\n"
        self._add(domain.Stream.SYSTEM, datetime.now(UTC), line, 1)

    def _add(self, stream: domain.Stream, ts: datetime, text: str, count: int) -> None:
        self._buffer.append(
            domain.LogSegment(self._seq + 1, self._attempt, stream, ts, text, count)
        )
        self._seq += count
        self._buffered_lines += count

    async def flush(self) -> None:
        async with self._lock:
            batch, self._buffer, self._buffered_lines = self._buffer, [], 0
            if batch:
                await self._plane.append_logs(batch)

    async def _flush_periodically(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FLUSH_INTERVAL_S):
                    await self._wake.wait()
            self._wake.clear()
            await self.flush()
