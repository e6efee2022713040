"""Turning a child's stdout/stderr pipes into lines delivered, in order, to an output callback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import IO

from rgrid.sandbox import OutputCallback

MAX_LINE_BYTES = 64 * 1024
READ_CHUNK_BYTES = 256 * 1024
DRAIN_GRACE_S = 1.0  # how long output may stall after the process is gone
DRAIN_MAX_S = 10.0  # and how long an escaped grandchild may keep trickling into the pipe


def block_lines(block: bytes) -> list[bytes]:
    """The lines of a block (see ``LineSplitter``): each keeps its b"\\n"."""
    if not block.endswith(b"\n"):
        return [block]
    return [line + b"\n" for line in block[:-1].split(b"\n")]


class LineSplitter:
    """Cuts a byte stream into **blocks** of whole lines, cheaply (no per-line work for the
    common case). A block ending in b"\\n" holds one or more complete lines; a block without
    it is exactly one line: a ``max_bytes`` piece of a longer line, or the final partial line.
    Lines longer than ``max_bytes`` are cut into pieces of ``max_bytes``. Bytes pass through
    untouched (CRLF, invalid UTF-8)."""

    def __init__(self, max_bytes: int = MAX_LINE_BYTES) -> None:
        self._max = max_bytes
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """The blocks that ``data`` completes; a partial last line waits for more."""
        buffer = self._buffer
        buffer += data
        blocks: list[bytes] = []
        last = buffer.rfind(b"\n")
        if last >= 0:
            blocks.extend(self._cut(bytes(buffer[: last + 1])))
            del buffer[: last + 1]
        while len(buffer) > self._max:  # a long line still without its newline
            blocks.append(bytes(buffer[: self._max]))
            del buffer[: self._max]
        return blocks

    def _cut(self, complete: bytes) -> list[bytes]:
        """Complete lines as one block, unless some line is over the limit (rare, slow path)."""
        if len(complete) <= self._max or max(map(len, complete.split(b"\n"))) < self._max:
            return [complete]
        blocks: list[bytes] = []
        run = bytearray()
        for content in complete[:-1].split(b"\n"):
            line = content + b"\n"
            while len(line) > self._max:
                if run:
                    blocks.append(bytes(run))
                    run.clear()
                blocks.append(line[: self._max])
                line = line[self._max :]
            run += line
        if run:
            blocks.append(bytes(run))
        return blocks

    def flush(self) -> list[bytes]:
        """The final partial line, if any (call at end of stream)."""
        rest, self._buffer = bytes(self._buffer), bytearray()
        return [rest] if rest else []


class OutputPumps:
    """Reads a process's pipes concurrently and awaits ``on_output`` with the blocks of lines
    of each read (see ``LineSplitter``).

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
                if pieces := splitter.feed(chunk):
                    await self._deliver(stream, pieces)
            if pieces := splitter.flush():
                await self._deliver(stream, pieces)
        except Exception:
            self._on_error()
            raise

    async def _deliver(self, stream: str, blocks: list[bytes]) -> None:
        # One call per read, not per line: a script printing 200,000 lines must not cost
        # 200,000 awaits.
        await self._on_output(stream, blocks)
        self._progress += len(blocks)
