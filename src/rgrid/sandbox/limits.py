"""Limits enforced on a sandboxed process: rlimits set in the child, the wall clock and the
process-group kill enforced from outside (rq's death penalty and ``kill_horse``, made async)."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import resource
import shutil
import signal
from collections.abc import Callable
from types import TracebackType

from rgrid import proc

logger = logging.getLogger(__name__)

KILL_GRACE_S = 1.0  # between SIGTERM and SIGKILL
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
PARENT_GONE_EXIT = 125

#: (resource, soft=hard limit) pairs, applied in the child before exec
Rlimits = list[tuple[int, int]]


def rlimits(
    memory_bytes: int, max_processes: int, max_file_bytes: int, max_open_files: int
) -> Rlimits:
    """The limits to set, each capped at this process's hard limit (raising it needs privilege).

    RLIMIT_NPROC counts every process of the real user, not only the sandbox's; root ignores it.
    Core dumps are off so a crashing script does not fill its work directory.
    """
    wanted = [
        (resource.RLIMIT_AS, memory_bytes),
        (resource.RLIMIT_NPROC, max_processes),
        (resource.RLIMIT_FSIZE, max_file_bytes),
        (resource.RLIMIT_NOFILE, max_open_files),
        (resource.RLIMIT_CORE, 0),
    ]
    capped = []
    for which, value in wanted:
        _, hard = resource.getrlimit(which)
        if value == resource.RLIM_INFINITY or hard != resource.RLIM_INFINITY:
            value = hard if value == resource.RLIM_INFINITY else min(value, hard)
        capped.append((which, value))
    return capped


@functools.cache
def nice_program() -> str | None:
    """coreutils' nice(1), if installed."""
    return shutil.which("nice")


def nice_argv(niceness: int, argv: list[str]) -> list[str]:
    """``argv`` started ``niceness`` lower in CPU priority by nice(1), which execs it (same
    pid; no ``preexec_fn``, so the child is still started with vfork). Unchanged if
    ``niceness`` is 0 or nice(1) is missing (logged)."""
    if niceness == 0:
        return argv
    program = nice_program()
    if program is None:
        logger.warning(
            "nice(1) not found: builds run at the grid's priority", extra={"action": "nice_missing"}
        )
        return argv
    return [program, "-n", str(niceness), *argv]


def preexec(limits: Rlimits) -> Callable[[], None]:
    """A ``preexec_fn`` that applies ``limits`` and makes the kernel SIGKILL the child if we die.

    The death signal fires when the *thread* that forked exits, so spawn from a thread that
    outlives the child (the event loop's).
    """
    prctl = _prctl()  # resolved here, before fork, so the child only calls it
    parent = os.getpid()

    def apply() -> None:
        for which, value in limits:
            resource.setrlimit(which, (value, value))
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # we died between fork and prctl: nobody will reap or kill us
            os._exit(PARENT_GONE_EXIT)

    return apply


@functools.cache
def _prctl() -> Callable[..., int] | None:
    try:
        function: Callable[..., int] = proc.libc().prctl
    except (OSError, AttributeError):  # not Linux: children may outlive a crashed grid
        return None
    return function


def kill_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid``; False if nobody was left to receive it."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:  # ESRCH: the group has already gone, which is what we wanted
        return False
    except PermissionError:  # a member changed user (setuid); we cannot do better
        logger.warning(
            "cannot signal process group %d", pgid, extra={"action": "sandbox_kill_denied"}
        )
        return False
    return True


async def stop_task(task: asyncio.Task[None] | None) -> None:
    """Cancel a watcher task and wait for it; re-raise what it failed with, if anything."""
    assert task is not None
    task.cancel()
    # asyncio.wait neither raises the task's CancelledError nor swallows our own
    await asyncio.wait({task})
    if not task.cancelled():
        task.result()


class Watchdog:
    """Async context manager that kills process group ``pgid`` on timeout or when ``cancel`` is set.

    Unlike rq's death penalty it raises nothing into the body: it sends SIGTERM, waits
    ``grace_s``, sends SIGKILL, and records why in ``timed_out`` / ``cancelled``; the body keeps
    waiting for the process to exit. Leaving the context stops the watchdog.
    """

    def __init__(
        self,
        pgid: int,
        timeout_s: float,
        cancel: asyncio.Event | None = None,
        grace_s: float = KILL_GRACE_S,
    ) -> None:
        self.timed_out = False
        self.cancelled = False
        self._pgid = pgid
        self._timeout_s = timeout_s
        self._cancel = cancel
        self._grace_s = grace_s
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watchdog:
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await stop_task(self._task)

    async def _watch(self) -> None:
        if await self._cancel_requested():
            self.cancelled = True
        else:
            self.timed_out = True
        logger.info(
            "killing process group %d",
            self._pgid,
            extra={"action": "sandbox_kill", "reason": "cancel" if self.cancelled else "timeout"},
        )
        kill_group(self._pgid, signal.SIGTERM)
        await asyncio.sleep(self._grace_s)
        kill_group(self._pgid, signal.SIGKILL)

    async def _cancel_requested(self) -> bool:
        """Wait for the cancel event or the deadline, whichever comes first."""
        if self._cancel is None:
            await asyncio.sleep(self._timeout_s)
            return False
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._cancel.wait()
        except TimeoutError:
            return False
        return True


DISK_POLL_S = 0.25
RESERVE_GRACE_BYTES = 16 * 1024**2


def tree_bytes(root: str) -> tuple[int, int]:
    """(total, largest) size of the files under ``root``, not following links.

    Sizes, not allocated blocks: the filesystem allocates written data late (and a sparse file
    is still that many bytes when it is collected as an output).
    """
    total = largest = 0
    stack = [root]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue  # removed meanwhile
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    else:
                        total += info.st_size
                        largest = max(largest, info.st_size)
        except OSError:
            continue
    return total, largest


def free_bytes(path: str) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


class DiskGuard:
    """Async context manager that kills process group ``pgid`` when ``workdirs`` hold more than
    ``limit_bytes`` or its disk has less than ``reserve_bytes`` free; ``exceeded`` says it did.

    A poll, not a quota (no filesystem here can give one per directory cheaply): a script can go
    past the limit by what it writes in one ``DISK_POLL_S``. RLIMIT_FSIZE (``file_limit_bytes``)
    bounds a single file; a file that reached it when the process ended counts as exceeding.
    """

    def __init__(
        self,
        pgid: int,
        workdirs: list[str],
        limit_bytes: int,
        reserve_bytes: int,
        file_limit_bytes: int,
        interval_s: float = DISK_POLL_S,
    ) -> None:
        self.exceeded = False
        self._file_limit = file_limit_bytes
        self._pgid = pgid
        self._workdirs = workdirs
        self._limit = limit_bytes
        self._reserve = reserve_bytes
        self._interval = interval_s
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> DiskGuard:
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await stop_task(self._task)
        if not self.exceeded and exc is None:
            _, largest = await asyncio.to_thread(self._usage)
            self.exceeded = largest >= self._file_limit

    def _usage(self) -> tuple[int, int]:
        sizes = [tree_bytes(directory) for directory in self._workdirs]
        return sum(total for total, _ in sizes), max((big for _, big in sizes), default=0)

    def _over(self) -> bool:
        used, _ = self._usage()
        if used > self._limit:
            return True
        # below the reserve, only a script that is itself writing much is stopped (a disk that
        # was already full keeps the dispatcher from starting anything new)
        return used > RESERVE_GRACE_BYTES and free_bytes(self._workdirs[0]) < self._reserve

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            if await asyncio.to_thread(self._over):
                break
        self.exceeded = True
        logger.info(
            "killing process group %d: disk limit",
            self._pgid,
            extra={"action": "sandbox_kill", "reason": "disk"},
        )
        kill_group(self._pgid, signal.SIGKILL)
