"""Where a sandbox is started from: a thread of the grid made ready beforehand.

A process is born in the cgroups of the thread that starts it, and with cgroup v1 one thread of
a process can be moved alone. Moving a process into a group after it started makes the kernel
wait out an RCU grace period first (about 10 ms here, on every execution's critical path). So a
fresh execution group is made and a thread moved into it ahead of time, in the background, and
the sandbox is started from that thread: bwrap and all it starts are born in the group, nothing
is moved while the execution waits. A sandbox with network on also enters its network
namespace from that thread (setns(2)), without a program in front of bwrap.

The thread stays until the sandbox has exited (bwrap's ``--die-with-parent`` follows the thread
that started it), then leaves the group and ends. Its being in the group takes nothing from the
script: memory is charged to the grid's own group (memory belongs to the process, whose leader
thread is not in the group), the OOM killer looks at processes through their leader thread,
``pids.max`` is set one higher for it, and the group's kill spares the grid's own pid.

Where threads cannot join a group (cgroup v2) or there are no cgroups, a launcher is a plain
thread and the group, if any, is made per execution and bwrap moved into it (``bwrap.py``).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from rgrid.sandbox import cgroups

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: launchers kept ready (each holds an empty group and an idle thread)
READY = 2


class Launcher:
    """One thread, used to start one sandbox; in ``group`` when that could be arranged."""

    def __init__(self, group: cgroups.ExecutionGroup | None) -> None:
        self.group = group
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="rgrid-launch")
        self._tid: int | None = None

    @classmethod
    def prepare(cls) -> Launcher:
        """A launcher whose thread is in a new group without limits yet (blocking: the move
        into the group takes the grace period this module exists to keep off the path)."""
        found = cgroups.detect()
        if found is None or not found.threads_join:
            return cls(None)
        group = found.create(None)
        launcher = cls(group)
        try:
            launcher._tid = launcher._thread.submit(_enter, group).result()
        except BaseException:
            launcher._thread.shutdown(wait=False)
            cgroups.remove_later(group)
            raise
        return launcher

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the launcher's thread (what it starts is born in the group)."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn)

    @property
    def executor(self) -> concurrent.futures.Executor:
        return self._thread

    def finish(self) -> None:
        """After the sandbox is gone: the thread leaves the group and ends; the group is
        killed and deleted in the background."""
        if self.group is not None and self._tid is not None:
            # on its own thread, before it ends: the move waits for the kernel (the group's
            # deletion retries until the thread is out)
            with contextlib.suppress(RuntimeError):  # exiting: a thread that ends leaves too
                self._thread.submit(_leave, self.group, self._tid)
        self._thread.shutdown(wait=False)
        if self.group is not None:
            cgroups.remove_later(self.group)


def _enter(group: cgroups.ExecutionGroup) -> int:
    group.enter_thread()
    return threading.get_native_id()


def _leave(group: cgroups.ExecutionGroup, tid: int) -> None:
    try:
        group.leave_thread(tid)
    except OSError:
        logger.exception(
            "a launcher thread could not leave its group", extra={"action": "cgroup_left"}
        )


class _Ready:
    """Launchers prepared in the background, so that taking one costs nothing."""

    def __init__(self) -> None:
        self._ready: list[Launcher] = []
        self._lock = threading.Lock()
        self._preparing = 0
        self._closed = False
        atexit.register(self.close)

    def take(self) -> Launcher | None:
        """A prepared launcher, or None (prepare one then); a replacement is made meanwhile."""
        with self._lock:
            taken = self._ready.pop() if self._ready else None
            wanted = READY - len(self._ready) - self._preparing
            self._preparing += max(0, wanted)
        for _ in range(max(0, wanted)):
            threading.Thread(
                target=self._prepare_one, name="rgrid-launch-prep", daemon=True
            ).start()
        return taken

    def _prepare_one(self) -> None:
        try:
            launcher = Launcher.prepare()
        except Exception:
            logger.exception("preparing a sandbox launcher failed", extra={"action": "launch_prep"})
            with self._lock:
                self._preparing -= 1
            return
        with self._lock:
            self._preparing -= 1
            if not self._closed and len(self._ready) < READY:
                self._ready.append(launcher)
                return
        launcher.finish()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            ready, self._ready = self._ready, []
        for launcher in ready:
            launcher.finish()


_ready = _Ready()


async def take() -> Launcher:
    """A launcher for one sandbox: a prepared one, else one prepared now."""
    launcher = _ready.take()
    if launcher is None:
        launcher = await asyncio.to_thread(Launcher.prepare)
    return launcher
