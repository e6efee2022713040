"""Ship a script's output lines to the grid in batches, numbered, bounded, and capped.

The sandbox hands over lines as they are read; they are buffered and flushed every
``FLUSH_INTERVAL_S`` or when ``FLUSH_LINES`` are waiting, so a chatty script costs one write per
batch rather than one per line. A full buffer makes the reader wait (back-pressure).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from datetime import UTC, datetime

from rgrid import domain
from rgrid.runner import ControlPlane

FLUSH_INTERVAL_S = 0.05
FLUSH_LINES = 2000
MAX_BUFFERED_LINES = 20_000
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
        self._buffer: list[domain.LogLine] = []
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
                f"[rgrid] log limit of {self._max_bytes} bytes reached: {self._dropped_lines} "
                f"lines ({self._dropped_bytes} bytes) were not stored\n",
            )
        await self.flush()

    async def on_output(self, stream: str, chunk: bytes) -> None:
        """The sandbox's output callback."""
        text = chunk.decode("utf-8", errors="replace")
        if stream == domain.Stream.STDERR:
            self.stderr_tail.append(text)
        if self._bytes + len(chunk) > self._max_bytes:
            self._dropped_lines += 1
            self._dropped_bytes += len(chunk)
            return
        self._bytes += len(chunk)
        self._add(domain.Stream(stream), text)
        if len(self._buffer) >= FLUSH_LINES:
            self._wake.set()
        if len(self._buffer) >= MAX_BUFFERED_LINES:
            await self.flush()

    async def setup(self, text: str) -> None:
        """A line of the environment build (uv's output), marked as setup."""
        self._add(domain.Stream.SETUP, text if text.endswith("\n") else text + "\n")
        if len(self._buffer) >= FLUSH_LINES:
            self._wake.set()

    def system(self, text: str) -> None:
        """An rgrid line about the execution (shown on stderr, marked as rgrid's)."""
        self._add(domain.Stream.SYSTEM, text if text.endswith("\n") else text + "\n")

    def _add(self, stream: domain.Stream, text: str) -> None:
        self._seq += 1
        self._buffer.append(
            domain.LogLine(
                seq=self._seq,
                attempt=self._attempt,
                stream=stream,
                ts=datetime.now(UTC),
                text=text,
            )
        )

    async def flush(self) -> None:
        async with self._lock:
            batch, self._buffer = self._buffer, []
            if batch:
                await self._plane.append_logs(batch)

    async def _flush_periodically(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), FLUSH_INTERVAL_S)
            self._wake.clear()
            await self.flush()
