"""A control group per execution: processes, memory (tmpfs pages included) and CPU bounded for the
script and everything it starts, whatever its uid.

Detected once per process from /proc/self/mountinfo: cgroup v2 where the unified hierarchy has the
memory and pids controllers, else v1 where the memory and pids hierarchies are mounted and
writable. Each execution's group is made under the grid's own group (``/proc/self/cgroup``), so a
limit put on the grid bounds its scripts too. Without either, ``detect()`` returns None and the
sandbox falls back to rlimits (logged once).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import logging
import os
import queue
import threading
import time
import uuid
from pathlib import Path
from typing import Protocol

logger = logging.getLogger(__name__)

MOUNTINFO = Path("/proc/self/mountinfo")
OWN_CGROUP = Path("/proc/self/cgroup")
GROUP_PARENT = "rgrid"
CPU_PERIOD_US = 100_000
REMOVE_TRIES = (
    50  # of 20 ms each: the kernel takes a moment to release a group whose tasks just died
)


@dataclasses.dataclass(frozen=True)
class GroupLimits:
    memory_bytes: int
    max_processes: int
    #: CPUs' worth of time per period (1.0 = one core); None: unbounded
    cpus: float | None


@dataclasses.dataclass(frozen=True)
class GroupReport:
    """What the kernel counted for a group while it lived."""

    #: processes the OOM killer killed because the group reached its memory limit
    oom_kills: int
    #: forks refused because the group reached its process limit
    fork_refusals: int
    peak_memory_bytes: int | None


class ExecutionGroup(Protocol):
    """One execution's group; ``add`` its first process before that process starts others, or
    start that process from a thread that ``enter_thread`` put in the group (v1 only)."""

    def add(self, pid: int) -> None: ...

    def set_limits(self, limits: GroupLimits) -> None:
        """Bound the group (once, on a group made without limits, before anything runs in it)."""
        ...

    def enter_thread(self) -> None:
        """Move the calling thread (not its process) into the group: what it starts is born
        there. Only where ``Cgroups.threads_join``."""
        ...

    def leave_thread(self, tid: int) -> None:
        """Move thread ``tid`` back to the grid's own group."""
        ...

    @property
    def directories(self) -> list[Path]:
        """Where it is in the cgroup filesystem (one per hierarchy)."""
        ...

    def report(self) -> GroupReport: ...

    def kill(self) -> None:
        """SIGKILL every process left in it."""
        ...

    def remove(self) -> None:
        """Kill what is left in it and delete it (idempotent)."""
        ...


class Cgroups(Protocol):
    version: int
    #: a single thread can be moved into a group (v1; v2 moves whole processes)
    threads_join: bool

    def create(self, limits: GroupLimits | None) -> ExecutionGroup:
        """A new group, bounded by ``limits`` (None: not yet, see ``set_limits``)."""
        ...


def _write(path: Path, value: str) -> None:
    with path.open("w") as handle:
        handle.write(value)


def _read_counters(path: Path) -> dict[str, int]:
    """A flat-keyed cgroup file ("key value" per line) as a dict; {} if unreadable."""
    counters: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            with contextlib.suppress(ValueError):
                counters[key] = int(value)
    return counters


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _kill(directories: list[Path]) -> None:
    own = str(os.getpid())  # listed while a thread of the grid is in the group: never killed
    for directory in directories:
        with contextlib.suppress(OSError):
            for pid in (directory / "cgroup.procs").read_text().split():
                if pid == own:
                    continue
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)


def _kill_and_remove(directories: list[Path]) -> None:
    """SIGKILL every process left in the groups, then rmdir them (children first)."""
    _kill(directories)
    for directory in directories:
        for _ in range(REMOVE_TRIES):
            try:
                directory.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:  # EBUSY while the killed tasks are being torn down
                time.sleep(0.02)
        else:
            logger.warning("cannot remove cgroup %s", directory, extra={"action": "cgroup_left"})


class _V1Group:
    def __init__(self, directories: dict[str, Path], homes: dict[str, Path]) -> None:
        self._dirs = directories
        self._homes = homes  # controller -> the grid's own group in that hierarchy

    @property
    def directories(self) -> list[Path]:
        return list(self._dirs.values())

    def add(self, pid: int) -> None:
        for directory in self._dirs.values():
            _write(directory / "cgroup.procs", str(pid))

    def set_limits(self, limits: GroupLimits) -> None:
        memory = self._dirs["memory"]
        _write(memory / "memory.limit_in_bytes", str(limits.memory_bytes))
        if (memory / "memory.memsw.limit_in_bytes").exists():  # no escape into swap
            _write(memory / "memory.memsw.limit_in_bytes", str(limits.memory_bytes))
        _write(self._dirs["pids"] / "pids.max", str(limits.max_processes))
        if "cpu" in self._dirs and limits.cpus is not None:
            quota = max(1000, int(limits.cpus * CPU_PERIOD_US))
            _write(self._dirs["cpu"] / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(self._dirs["cpu"] / "cpu.cfs_quota_us", str(quota))

    def enter_thread(self) -> None:
        tid = str(threading.get_native_id())
        for directory in self._dirs.values():
            _write(directory / "tasks", tid)

    def leave_thread(self, tid: int) -> None:
        for controller in self._dirs:
            with contextlib.suppress(ProcessLookupError):  # the thread is gone: nothing to do
                _write(self._homes[controller] / "tasks", str(tid))

    def report(self) -> GroupReport:
        memory, pids = self._dirs.get("memory"), self._dirs.get("pids")
        oom = _read_counters(memory / "memory.oom_control").get("oom_kill", 0) if memory else 0
        refused = _read_counters(pids / "pids.events").get("max", 0) if pids else 0
        peak = _read_int(memory / "memory.max_usage_in_bytes") if memory else None
        return GroupReport(oom_kills=oom, fork_refusals=refused, peak_memory_bytes=peak)

    def kill(self) -> None:
        _kill(list(self._dirs.values()))

    def remove(self) -> None:
        _kill_and_remove(list(self._dirs.values()))


class CgroupsV1:
    """One hierarchy per controller (``/sys/fs/cgroup/memory``, ``…/pids``, ``…/cpu``)."""

    version = 1
    threads_join = True

    def __init__(self, parents: dict[str, Path]) -> None:
        self._parents = parents  # controller -> our parent group in its hierarchy

    def create(self, limits: GroupLimits | None) -> ExecutionGroup:
        name = uuid.uuid4().hex[:16]
        made: dict[str, Path] = {}
        homes = {controller: parent.parent for controller, parent in self._parents.items()}
        try:
            for controller, parent in self._parents.items():
                directory = parent / name
                directory.mkdir()
                made[controller] = directory
            group = _V1Group(made, homes)
            if limits is not None:
                group.set_limits(limits)
        except OSError:
            _kill_and_remove(list(made.values()))
            raise
        return group


class _V2Group:
    def __init__(self, directory: Path, cpu: bool) -> None:
        self._dir = directory
        self._cpu = cpu

    @property
    def directories(self) -> list[Path]:
        return [self._dir]

    def add(self, pid: int) -> None:
        _write(self._dir / "cgroup.procs", str(pid))

    def set_limits(self, limits: GroupLimits) -> None:
        _write(self._dir / "memory.max", str(limits.memory_bytes))
        if (self._dir / "memory.swap.max").exists():
            _write(self._dir / "memory.swap.max", "0")
        _write(self._dir / "pids.max", str(limits.max_processes))
        if self._cpu and limits.cpus is not None:
            quota = max(1000, int(limits.cpus * CPU_PERIOD_US))
            _write(self._dir / "cpu.max", f"{quota} {CPU_PERIOD_US}")

    def enter_thread(self) -> None:
        raise NotImplementedError("cgroup v2 moves whole processes")

    def leave_thread(self, tid: int) -> None:
        raise NotImplementedError("cgroup v2 moves whole processes")

    def report(self) -> GroupReport:
        events = _read_counters(self._dir / "memory.events")
        pids = _read_counters(self._dir / "pids.events")
        return GroupReport(
            oom_kills=events.get("oom_kill", 0),
            fork_refusals=pids.get("max", 0),
            peak_memory_bytes=_read_int(self._dir / "memory.peak"),
        )

    def kill(self) -> None:
        if (self._dir / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                _write(self._dir / "cgroup.kill", "1")
        _kill([self._dir])

    def remove(self) -> None:
        self.kill()
        _kill_and_remove([self._dir])


class CgroupsV2:
    """The unified hierarchy: one directory per execution with memory, pids (and cpu) limits."""

    version = 2
    threads_join = False

    def __init__(self, parent: Path, cpu: bool) -> None:
        self._parent = parent
        self._cpu = cpu

    def create(self, limits: GroupLimits | None) -> ExecutionGroup:
        directory = self._parent / uuid.uuid4().hex[:16]
        directory.mkdir()
        group = _V2Group(directory, self._cpu)
        try:
            if limits is not None:
                group.set_limits(limits)
        except OSError:
            _kill_and_remove([directory])
            raise
        return group


class _Remover:
    """Deletes finished groups on a thread of its own.

    The kernel lets a group go some milliseconds after its last task died (rmdir says EBUSY
    until then); an execution should not wait for that, so its group is killed at once and
    deleted here. At exit what is queued is still deleted, for at most ``EXIT_WAIT_S``.
    """

    EXIT_WAIT_S = 2.0

    def __init__(self) -> None:
        self._queue: queue.Queue[ExecutionGroup] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def put(self, group: ExecutionGroup) -> None:
        group.kill()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="cgroup-remover", daemon=True
                )
                self._thread.start()
                atexit.register(self.wait, self.EXIT_WAIT_S)
        self._queue.put(group)

    def wait(self, timeout_s: float | None = None) -> bool:
        """Until every queued group is deleted (True) or ``timeout_s`` passed (False)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self._queue.unfinished_tasks:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def _run(self) -> None:
        while True:
            group = self._queue.get()
            try:
                group.remove()
            except Exception:  # a thread of its own: log, never die
                logger.exception("removing a cgroup failed", extra={"action": "cgroup_left"})
            finally:
                self._queue.task_done()


_remover = _Remover()


def remove_later(group: ExecutionGroup) -> None:
    """Kill what is left in ``group`` now; delete it in the background."""
    _remover.put(group)


def wait_removed(timeout_s: float | None = None) -> bool:
    """Until the groups given to ``remove_later`` are deleted (tests, shutdown)."""
    return _remover.wait(timeout_s)


@dataclasses.dataclass(frozen=True)
class _Mount:
    fstype: str
    point: Path
    options: frozenset[str]


def _mounts(mountinfo: str) -> list[_Mount]:
    mounts = []
    for line in mountinfo.splitlines():
        before, _, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        point = Path(fields[4].replace("\\040", " "))
        mounts.append(_Mount(tail[0], point, frozenset(tail[2].split(","))))
    return mounts


def _own_paths(cgroup_file: str) -> dict[str, str]:
    """controller (or "" for v2) -> this process's group path in that hierarchy."""
    paths: dict[str, str] = {}
    for line in cgroup_file.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(",") if parts[1] else [""]:
                paths[controller] = parts[2]
    return paths


def _prepare(parent: Path) -> Path | None:
    try:
        parent.mkdir(exist_ok=True)
    except OSError:
        return None
    return parent if os.access(parent, os.W_OK) else None


def _v2(mounts: list[_Mount]) -> Cgroups | None:
    unified = next((m for m in mounts if m.fstype == "cgroup2"), None)
    if unified is None:
        return None
    with contextlib.suppress(OSError):
        available = set((unified.point / "cgroup.controllers").read_text().split())
        if not {"memory", "pids"} <= available:
            return None
        # Our own parent at the root of the hierarchy: only there may a group both hold no
        # processes and hand controllers down, whatever group the grid itself runs in.
        parent = _prepare(unified.point / GROUP_PARENT)
        if parent is None:
            return None
        wanted = ["memory", "pids", *(["cpu"] if "cpu" in available else [])]
        _write(unified.point / "cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))
        _write(parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))
        return CgroupsV2(parent, cpu="cpu" in wanted)
    return None


def _v1(mounts: list[_Mount], own: dict[str, str]) -> Cgroups | None:
    parents: dict[str, Path] = {}
    for controller in ("memory", "pids", "cpu"):
        mount = next((m for m in mounts if m.fstype == "cgroup" and controller in m.options), None)
        if mount is None:
            continue
        base = mount.point / own.get(controller, "/").lstrip("/")
        parent = _prepare(base / GROUP_PARENT)
        if parent is not None:
            parents[controller] = parent
    if not {"memory", "pids"} <= parents.keys():
        return None
    return CgroupsV1(parents)


@functools.cache
def detect() -> Cgroups | None:
    """This host's cgroups, or None (logged) if neither version gives memory and pids here."""
    try:
        mounts = _mounts(MOUNTINFO.read_text())
        own = _own_paths(OWN_CGROUP.read_text())
    except OSError:
        mounts, own = [], {}
    found = _v2(mounts) or _v1(mounts, own)
    if found is None:
        logger.warning(
            "no writable cgroup with memory and pids controllers: limits are per process only",
            extra={"action": "cgroups_unavailable"},
        )
    return found
