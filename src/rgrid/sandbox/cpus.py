"""The CPUs an execution runs on: as many as its slots, so that ``os.cpu_count()``,
``os.sched_getaffinity(0)`` (and ``os.process_cpu_count()``) in the script report what it
was given and default pool sizes (``multiprocessing.Pool()``) fit, as on a machine of that
size.

Executions are spread over the CPUs, the least busy first, counted across every process of
the host that runs sandboxes (a server, each Ray worker process of a node): each holder leaves
a file named after its process in a folder per CPU, under one lock; a dead process's files
no longer count."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from rgrid import proc

#: where glibc's ``get_nprocs`` (``os.cpu_count()``) reads the CPUs that are online
ONLINE = "/sys/devices/system/cpu/online"
#: the host-wide record of who runs on which CPU (root: a root-only place)
ROOT_REGISTRY = Path("/run/rgrid-cpus")


def _registry() -> Path | None:
    """The host-wide folder, owned by us and by nobody else; None: count in this process."""
    path = (
        ROOT_REGISTRY
        if os.geteuid() == 0
        else Path(tempfile.gettempdir()) / f"rgrid-cpus-{os.geteuid()}"
    )
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = os.lstat(path)
    private = (info.st_mode & 0o777) == 0o700 and info.st_uid == os.geteuid()
    return path if private and not path.is_symlink() and path.is_dir() else None


def _alive(holder: str) -> bool:
    pid = holder.split("-", 1)[0]
    return pid.isdigit() and proc.alive(int(pid))


class CpuSets:
    """Hands out sets of CPUs, each to one sandbox at a time; a CPU may be in several sets
    when there are more slots than CPUs."""

    def __init__(self, cpus: set[int] | None = None, registry: Path | None = None) -> None:
        self._cpus = sorted(cpus if cpus is not None else os.sched_getaffinity(0))
        self._registry = registry
        self._local: dict[int, int] = {}

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if self._registry is None:
            yield
            return
        fd = os.open(self._registry / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _held(self, cpu: int) -> int:
        if self._registry is None:
            return self._local.get(cpu, 0)
        folder = self._registry / str(cpu)
        if not folder.is_dir():
            return 0
        held = 0
        for entry in folder.iterdir():
            if _alive(entry.name):
                held += 1
            else:
                entry.unlink(missing_ok=True)  # its process died holding it
        return held

    def take(self, count: int) -> tuple[tuple[int, ...], str]:
        """``count`` CPUs (at most all of them), those held by the fewest sandboxes first, and
        the holder's name to give them back with."""
        holder = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        with self._locked():
            chosen = sorted(self._cpus, key=lambda cpu: (self._held(cpu), cpu))[:count]
            for cpu in chosen:
                if self._registry is None:
                    self._local[cpu] = self._local.get(cpu, 0) + 1
                else:
                    folder = self._registry / str(cpu)
                    folder.mkdir(mode=0o700, exist_ok=True)
                    (folder / holder).touch()
        return tuple(sorted(chosen)), holder

    def give_back(self, cpus: tuple[int, ...], holder: str) -> None:
        with self._locked():
            for cpu in cpus:
                if self._registry is None:
                    self._local[cpu] -= 1
                else:
                    (self._registry / str(cpu) / holder).unlink(missing_ok=True)


@functools.cache
def shared() -> CpuSets:
    try:
        registry = _registry()
    except OSError:
        registry = None
    return CpuSets(registry=registry)


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
def _private_folder() -> Path:
    """This process's own folder for the files it mounts (made by mkdtemp: nobody else's)."""
    folder = Path(tempfile.mkdtemp(prefix="rgrid-cpus-"))
    folder.chmod(0o755)  # the sandbox's user reads the files through the mount
    atexit.register(shutil.rmtree, folder, True)
    return folder


def online_file(cpus: tuple[int, ...]) -> Path:
    """A file that reads like ``/sys/devices/system/cpu/online`` with only ``cpus`` in it,
    mounted there read-only in the sandbox (made again if something removed it)."""
    path = _private_folder() / f"online-{cpu_list(cpus)}"
    if not path.is_file():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w") as handle:
            handle.write(cpu_list(cpus) + "\n")
    return path
