"""The CPUs an execution runs on: as many as its slots, so that ``os.cpu_count()``,
``os.sched_getaffinity(0)`` (and ``os.process_cpu_count()``) in the script report what it
was given and default pool sizes (``multiprocessing.Pool()``) fit, as on a machine of that
size. Executions are spread over the CPUs the grid may use, the least busy first."""

from __future__ import annotations

import collections
import functools
import os
import tempfile
import threading
from pathlib import Path

#: where glibc's ``get_nprocs`` (``os.cpu_count()``) reads the CPUs that are online
ONLINE = "/sys/devices/system/cpu/online"


class CpuSets:
    """Hands out sets of CPUs, each to one sandbox at a time; a CPU may be in several sets
    when there are more slots than CPUs."""

    def __init__(self, cpus: set[int] | None = None) -> None:
        self._cpus = sorted(cpus if cpus is not None else os.sched_getaffinity(0))
        self._held: collections.Counter[int] = collections.Counter()
        self._lock = threading.Lock()

    def take(self, count: int) -> tuple[int, ...]:
        """``count`` CPUs (at most all of them), those held by the fewest sandboxes first."""
        with self._lock:
            chosen = sorted(self._cpus, key=lambda cpu: (self._held[cpu], cpu))[:count]
            self._held.update(chosen)
        return tuple(sorted(chosen))

    def give_back(self, cpus: tuple[int, ...]) -> None:
        with self._lock:
            self._held.subtract(cpus)


@functools.cache
def shared() -> CpuSets:
    return CpuSets()


def cpu_list(cpus: tuple[int, ...]) -> str:
    """The kernel's list format: ``0-3,6``."""
    ranges: list[list[int]] = []
    for cpu in sorted(cpus):
        if ranges and ranges[-1][1] == cpu - 1:
            ranges[-1][1] = cpu
        else:
            ranges.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


@functools.cache
def online_file(cpus: tuple[int, ...]) -> Path:
    """A file that reads like ``/sys/devices/system/cpu/online`` with only ``cpus`` in it,
    mounted there read-only in the sandbox."""
    folder = Path(tempfile.gettempdir()) / f"rgrid-cpus-{os.getpid()}"
    folder.mkdir(mode=0o755, exist_ok=True)
    folder.chmod(0o755)
    path = folder / f"online-{cpu_list(cpus)}"
    path.write_text(cpu_list(cpus) + "\n")
    path.chmod(0o644)
    return path
