"""Turning a child's stdout/stderr pipes into lines delivered, in order, to an output callback."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import select
import threading
import time
from collections.abc import Callable, Mapping
from typing import IO

from rgrid.sandbox import OutputCallback

MAX_LINE_BYTES = 64 * 1024
MAX_QUEUED_BYTES = 4 * 1024 * 1024  # read but not yet delivered: past this, stop reading
READ_BYTES = 256 * 1024  # at most this much per read (as asyncio reads a pipe)
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
    """Reads a process's pipes and awaits ``on_output`` with the blocks of lines of each read
    (see ``LineSplitter``), one read at a time, **in the order the reads happened** across
    both pipes: a read that arrives while ``on_output`` is still busy with an earlier one
    waits its turn, so stderr never overtakes stdout that was read before it.

    The pipes are read by a thread of their own, not by the event loop: a loop busy with
    other executions would leave both pipes unread for a while, and lines written to the two
    in that while can no longer be told apart in time (two pipes carry no order between
    them; see docs/decisions.md, "Order of stdout and stderr"). The thread reads as soon as
    the kernel says a pipe has data and hands each read to the loop, which delivers them.

    If ``on_output`` raises, ``on_error`` is called to kill the process (a pipe nobody reads
    would block the script until its timeout) and ``drain`` re-raises the error.
    """

    def __init__(self, on_output: OutputCallback, on_error: Callable[[], None]) -> None:
        self._on_output = on_output
        self._on_error = on_error
        self._reader: _PipeReader | None = None
        self._reads: collections.deque[tuple[str, list[bytes], int]] = collections.deque()
        self._queued_bytes = 0
        self._open = 0  # pipes not at EOF yet
        self._failed = False
        self._wake = asyncio.Event()
        self._delivery: asyncio.Task[None] | None = None
        self._progress = 0  # pieces delivered so far: lets drain tell slow from stuck

    def start(self, pipes: Mapping[str, IO[bytes]]) -> None:
        """Start reading ``pipes`` (stream name → pipe); takes ownership of them."""
        if not pipes:
            return
        self._open = len(pipes)
        self._reader = _PipeReader(self, pipes, asyncio.get_running_loop())
        self._delivery = asyncio.create_task(self._deliver_in_order())

    async def drain(self) -> None:
        """Wait for the pipes to reach EOF, call once the process has exited.

        A grandchild that escaped the group kill may hold a pipe open forever, so stop reading
        once a grace period passes without any output delivered (or after ``DRAIN_MAX_S``);
        what was already read is still delivered.
        """
        if self._delivery is None:
            return
        seen = -1
        deadline = time.monotonic() + DRAIN_MAX_S
        while not self._delivery.done() and seen != self._progress:
            if time.monotonic() >= deadline:
                break
            seen = self._progress
            await asyncio.wait([self._delivery], timeout=DRAIN_GRACE_S)
        self.close()  # EOF for the reader: it hands over the partial lines and finishes
        await self._delivery

    def close(self) -> None:
        """Stop reading and close the pipes; idempotent."""
        if self._reader is not None:
            self._reader.stop()

    def abort(self) -> None:
        """Close the pipes and stop delivering (the run itself was cancelled)."""
        self.close()
        if self._delivery is not None:
            self._delivery.cancel()

    def received(self, stream: str, blocks: list[bytes], size: int) -> None:
        """A read of ``size`` bytes of ``stream``, cut into ``blocks`` (maybe none yet)."""
        if self._failed:
            return
        if blocks:
            self._reads.append((stream, blocks, size))
            self._queued_bytes += size
            self._wake.set()
        if self._queued_bytes > MAX_QUEUED_BYTES and self._reader is not None:
            self._reader.pause()  # backpressure: the script blocks on a full pipe, as under python

    def ended(self, stream: str, blocks: list[bytes]) -> None:
        """A pipe reached EOF (or was closed); ``blocks`` is its last partial line, if any."""
        self.received(stream, blocks, sum(map(len, blocks)))
        self._open -= 1
        self._wake.set()

    async def _deliver_in_order(self) -> None:
        try:
            while self._reads or self._open:
                if not self._reads:
                    await self._wake.wait()
                    self._wake.clear()
                    continue
                stream, blocks, size = self._reads.popleft()
                # One call per read, not per line: a script printing 200,000 lines must not
                # cost 200,000 awaits.
                await self._on_output(stream, blocks)
                self._progress += len(blocks)
                self._queued_bytes -= size
                if self._queued_bytes <= MAX_QUEUED_BYTES // 2 and self._reader is not None:
                    self._reader.resume()
        except Exception:
            self._failed = True
            self._reads.clear()
            self._on_error()
            raise


class _PipeReader:
    """A thread that reads the pipes as their data arrives, cuts it into lines and queues each
    read on its ``OutputPumps`` through the event loop, in the order of the reads."""

    def __init__(
        self,
        pumps: OutputPumps,
        pipes: Mapping[str, IO[bytes]],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._pumps = pumps
        self._loop = loop
        self._pipes = dict(pipes)
        self._may_read = threading.Event()
        self._may_read.set()
        self._stopping = False
        # a byte written here wakes the thread out of poll() (to stop); the lock keeps stop()
        # from writing to it once the thread has closed it (the number may be reused by then)
        self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._wake_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="output-pipes", daemon=True)
        self._thread.start()

    def pause(self) -> None:
        self._may_read.clear()

    def resume(self) -> None:
        self._may_read.set()

    def stop(self) -> None:
        """Read no more: the thread hands over the partial lines, closes the pipes and ends."""
        with self._wake_lock:
            if self._stopping:
                return
            self._stopping = True
            self._may_read.set()
            os.write(self._wake_write, b"x")

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._wake_read, select.POLLIN)
        reading: dict[int, tuple[str, LineSplitter]] = {}
        for stream, pipe in self._pipes.items():
            fd = pipe.fileno()
            os.set_blocking(fd, False)
            poller.register(fd, select.POLLIN)
            reading[fd] = (stream, LineSplitter())
        try:
            while reading and not self._stopping:
                self._may_read.wait()
                for fd, _ in poller.poll():
                    if fd == self._wake_read or fd not in reading:
                        continue
                    stream, splitter = reading[fd]
                    data = _read(fd)
                    if data is None:
                        continue
                    if data:
                        self._post(self._pumps.received, stream, splitter.feed(data), len(data))
                    else:
                        poller.unregister(fd)
                        del reading[fd]
                        self._post(self._pumps.ended, stream, splitter.flush())
        finally:
            for pipe in self._pipes.values():
                pipe.close()
            for stream, splitter in reading.values():
                self._post(self._pumps.ended, stream, splitter.flush())
            with self._wake_lock:
                self._stopping = True
                os.close(self._wake_read)
                os.close(self._wake_write)

    def _post(self, callback: Callable[..., None], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self._loop.call_soon_threadsafe(callback, *args)


def _read(fd: int) -> bytes | None:
    """What the pipe holds (b"" at EOF), or None if nothing after all."""
    try:
        return os.read(fd, READ_BYTES)
    except BlockingIOError:
        return None
    except OSError:  # EIO: a terminal's leader once the child side is gone, which is its EOF
        return b""
