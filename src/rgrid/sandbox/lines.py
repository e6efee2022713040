"""Turning a child's stdout/stderr pipes into lines delivered, in order, to an output callback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import IO

from rgrid.sandbox import OutputCallback

MAX_LINE_BYTES = 64 * 1024
READ_CHUNK_BYTES = 64 * 1024
DRAIN_GRACE_S = 1.0  # how long output may stall after the process is gone
DRAIN_MAX_S = 10.0  # and how long an escaped grandchild may keep trickling into the pipe


class LineSplitter:
    """Cuts a byte stream into lines that keep their b"\\n", and lines longer than ``max_bytes``
    into pieces of ``max_bytes``. Bytes pass through untouched (CRLF, invalid UTF-8)."""

    def __init__(self, max_bytes: int = MAX_LINE_BYTES) -> None:
        self._max = max_bytes
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """The complete lines and pieces that ``data`` finishes; the rest waits for more."""
        buffer = self._buffer
        buffer += data
        pieces: list[bytes] = []
        start = 0
        while True:
            newline = buffer.find(b"\n", start)
            end = len(buffer) if newline < 0 else newline + 1
            while end - start > self._max:
                pieces.append(bytes(buffer[start : start + self._max]))
                start += self._max
            if newline < 0:
                break
            pieces.append(bytes(buffer[start:end]))
            start = end
        del buffer[:start]
        return pieces

    def flush(self) -> list[bytes]:
        """The final partial line, if any (call at end of stream)."""
        rest, self._buffer = bytes(self._buffer), bytearray()
        return [rest] if rest else []


class OutputPumps:
    """Reads a process's pipes concurrently and awaits ``on_output`` for each line.

    If ``on_output`` raises, ``on_error`` is called to kill the process (a pipe nobody reads
    would block the script until its timeout) and ``drain`` re-raises the error.
    """

    def __init__(self, on_output: OutputCallback, on_error: Callable[[], None]) -> None:
        self._on_output = on_output
        self._on_error = on_error
        self._transports: list[asyncio.BaseTransport] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._progress = 0  # pieces delivered so far: lets drain tell slow from stuck

    async def start(self, stream: str, pipe: IO[bytes]) -> None:
        """Start pumping ``pipe``; takes ownership of it."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=READ_CHUNK_BYTES)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
        self._transports.append(transport)
        self._tasks.append(asyncio.create_task(self._pump(stream, reader)))

    async def drain(self) -> None:
        """Wait for both pipes to reach EOF, call once the process has exited.

        A grandchild that escaped the group kill may hold a pipe open forever, so stop reading
        once a grace period passes without any output delivered (or after ``DRAIN_MAX_S``);
        what was already read is still delivered.
        """
        pending = set(self._tasks)
        seen = -1
        deadline = time.monotonic() + DRAIN_MAX_S
        while pending and seen != self._progress and time.monotonic() < deadline:
            seen = self._progress
            _, pending = await asyncio.wait(pending, timeout=DRAIN_GRACE_S)
        self.close()  # EOF for the readers: they flush their buffered bytes and finish
        await asyncio.gather(*self._tasks)

    def close(self) -> None:
        """Close the pipes; idempotent."""
        for transport in self._transports:
            transport.close()

    def abort(self) -> None:
        """Close the pipes and stop delivering (the run itself was cancelled)."""
        self.close()
        for task in self._tasks:
            task.cancel()

    async def _pump(self, stream: str, reader: asyncio.StreamReader) -> None:
        splitter = LineSplitter()
        try:
            while chunk := await reader.read(READ_CHUNK_BYTES):
                for piece in splitter.feed(chunk):
                    await self._deliver(stream, piece)
            for piece in splitter.flush():
                await self._deliver(stream, piece)
        except Exception:
            self._on_error()
            raise

    async def _deliver(self, stream: str, piece: bytes) -> None:
        await self._on_output(stream, piece)
        self._progress += 1
