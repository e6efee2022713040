"""The sandbox seam: run one process under limits and stream its output, knowing nothing of
executions.

``SandboxSpec`` says what to run, ``SandboxResult`` how it ended, ``Sandbox`` is the Protocol each
isolation technology implements (``bwrap.BwrapSandbox``, ``process.ProcessSandbox``), and
``detect()`` picks the strongest one that works on this host.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from rgrid import errors

logger = logging.getLogger(__name__)

TIMEOUT_S = 3600.0
MEMORY_BYTES = 2 * 1024**3
MAX_PROCESSES = 512
MAX_FILE_BYTES = 16 * 1024**3
MAX_OPEN_FILES = 1024
DISK_BYTES = 10 * 1024**3
#: a script writing while its disk has less free than this is stopped (the grid needs room)
DISK_RESERVE_BYTES = 1024**3
TIMEOUT_EXIT_CODE = 124  # what coreutils `timeout` exits with
PROBE_TIMEOUT_S = 10.0
SANDBOX_ENV = "RGRID_SANDBOX"

#: (stream, data): stream is "stdout" or "stderr"; data is one line including its b"\n", the final
#: partial line, or a piece of at most 64 KiB of a longer line.
#: (stream, blocks read together): a block ending in b"\n" holds complete lines, one without
#: it is a single line (a 64 KiB piece of a longer line, or the partial last line at EOF);
#: ``lines.block_lines`` splits a block
OutputCallback = Callable[[str, list[bytes]], Awaitable[None]]


@dataclass(frozen=True)
class SandboxSpec:
    """What to run and under which limits.

    ``argv[0]`` is an absolute path. ``workdir`` is a writable host directory that becomes the
    working directory (at the same path inside a bwrap sandbox). ``env`` is the complete
    environment of the process; nothing of the caller's environment is added. ``ro_binds`` are
    (host path, sandbox path) read-only mounts; the process sandbox, which has no mount namespace,
    ignores them. Memory is RLIMIT_AS, so an oversized allocation fails with MemoryError rather
    than being killed, and, where cgroups can be had, also the whole group's memory (tmpfs
    included). ``disk_bytes`` bounds what the work directory may hold; ``cpus`` the CPU time
    per wall-clock second of the whole group (None: unbounded). ``stdin_path`` is a file the
    process reads as its stdin (opened read-only by the sandbox, so it need not be visible
    inside); None: ``/dev/null``, end-of-file at once.
    """

    argv: list[str]
    workdir: Path
    env: dict[str, str]
    ro_binds: tuple[tuple[Path, Path], ...] = ()
    #: (host directory, sandbox path) writable mounts besides the work directory: what the
    #: user named outside their working directory, mounted at its own place
    rw_binds: tuple[tuple[Path, Path], ...] = ()
    #: where the work directory appears and the process starts (None: at its own path); the
    #: process sandbox, which cannot mount, ignores it and ``rw_binds``
    workdir_inside: Path | None = None
    timeout_s: float = TIMEOUT_S
    memory_bytes: int = MEMORY_BYTES
    network: bool = True
    max_processes: int = MAX_PROCESSES
    max_file_bytes: int = MAX_FILE_BYTES
    max_open_files: int = MAX_OPEN_FILES
    disk_bytes: int = DISK_BYTES
    disk_reserve_bytes: int = DISK_RESERVE_BYTES
    cpus: float | None = None
    stdin_path: Path | None = None
    #: added to the process's nice value (0: the grid's own priority); environment builds run
    #: lower so that the grid's event loop and the scripts keep the CPU they need
    niceness: int = 0
    #: the directories whose size ``disk_bytes`` bounds (None: the work directory and the
    #: ``rw_binds``); for a work directory that is an overlay, its upper layer: what was written
    written_dirs: tuple[Path, ...] | None = None
    #: the work directory already belongs to the script's user, as prepared by the caller (an
    #: overlay): it is not handed over file by file
    workdir_ready: bool = False
    #: a tmpfs of the caller's (mode 1777) that is the script's /tmp, so the caller can see
    #: what was left there; None: a private tmpfs (the process sandbox ignores it)
    tmp_dir: Path | None = None
    #: the streams that are pseudo-terminals of this size (None: both are pipes)
    terminal: TerminalSpec | None = None


@dataclass(frozen=True)
class TerminalSpec:
    """Pseudo-terminals for the script's stdout and/or stderr: ``isatty()`` is true there and
    the size is the user's. Output processing is off: the log holds the bytes it wrote."""

    columns: int = 80
    lines: int = 24
    stdout: bool = True
    stderr: bool = True


class LimitHit(StrEnum):
    """Which of the sandbox's own bounds stopped the process (besides the wall clock)."""

    #: the group's memory (the kernel's OOM killer killed a process of it)
    MEMORY = "memory"
    #: the group's process count (a fork was refused)
    PROCESSES = "processes"
    #: the work directory's size, or the grid's free-space reserve
    DISK = "disk"


@dataclass(frozen=True)
class SandboxResult:
    """How the process ended.

    Exactly one of ``returncode`` (normal exit) and ``signal`` (killed by that signal) is set.
    ``timed_out`` and ``cancelled`` say the sandbox killed it; ``max_rss_bytes`` is the peak
    resident memory of the process and the descendants it waited for, when the OS reports it.
    """

    returncode: int | None
    signal: int | None
    timed_out: bool
    cancelled: bool
    duration_s: float
    max_rss_bytes: int | None
    #: a bound the process ran into, if any (it may still have exited by itself)
    limit_hit: LimitHit | None = None
    #: whether it (or anything it started) opened a connection or sent a datagram; None: not
    #: observed (the host's network, or a sandbox without network namespaces)
    network_used: bool | None = None

    @property
    def exit_code(self) -> int:
        """The shell's convention: 124 on timeout, 128+N if killed by signal N, else the status."""
        if self.timed_out:
            return TIMEOUT_EXIT_CODE
        if self.signal is not None:
            return 128 + self.signal
        return 1 if self.returncode is None else self.returncode


class Sandbox(Protocol):
    """One isolation technology. ``strength`` is a one-line description for logs and doctor."""

    name: str
    strength: str

    async def run(
        self,
        spec: SandboxSpec,
        on_output: OutputCallback,
        cancel: asyncio.Event | None = None,
    ) -> SandboxResult:
        """Run ``spec.argv`` to completion and return how it ended.

        Each output line is awaited through ``on_output`` in the order read, so a slow callback
        slows the process down rather than buffering without bound. On timeout, or when
        ``cancel`` is set, the whole process group gets SIGTERM and, after about a second,
        SIGKILL. Returns only after the process is reaped and its pipes are drained (a
        grandchild that escaped the kill and keeps a pipe open is given about a second).
        Raises ``errors.SandboxError`` if the sandbox could not start the process; an exception
        from ``on_output`` kills the process and is re-raised.
        """
        ...


def detect() -> Sandbox:
    """The strongest sandbox that works here; ``RGRID_SANDBOX=bwrap|process`` forces one.

    Raises ``errors.SandboxError`` if bwrap is forced but cannot run, or the variable is invalid.
    """
    from rgrid.sandbox import bwrap, process  # lazily: those modules import this one

    choice = os.environ.get(SANDBOX_ENV, "").strip().lower()
    if choice == "process":
        return process.ProcessSandbox()
    if choice not in ("", "auto", "bwrap"):
        raise errors.SandboxError(
            f"{SANDBOX_ENV}={choice!r} is not a sandbox", hint="use 'bwrap' or 'process'"
        )
    problem = _bwrap_problem()
    if problem is None:
        return bwrap.BwrapSandbox()
    if choice == "bwrap":
        raise errors.SandboxError(
            f"{SANDBOX_ENV}=bwrap but bubblewrap cannot run here: {problem}",
            hint="install bubblewrap (apt-get install bubblewrap) or unset RGRID_SANDBOX",
        )
    logger.warning(
        "bubblewrap unavailable (%s): scripts run in the weaker process sandbox",
        problem,
        extra={"action": "sandbox_weaker"},
    )
    return process.ProcessSandbox()


@functools.cache
def _bwrap_problem() -> str | None:
    """Why bwrap cannot run here, or None; probed once per process with the options we use."""
    from rgrid.sandbox import bwrap

    executable = shutil.which(bwrap.BWRAP)
    if executable is None:
        return "bwrap is not installed"
    true = shutil.which("true") or "/bin/true"
    # what every run uses, including the exit status report on fd 1
    argv = [executable, *bwrap.isolation_args(None), "--json-status-fd", "1", "--", true]
    try:
        probe = subprocess.run(
            argv, capture_output=True, timeout=PROBE_TIMEOUT_S, check=False, env={}
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"the trial run failed: {exc}"
    if probe.returncode != 0:
        message = probe.stderr.decode(errors="replace").strip()
        return f"the trial run exited {probe.returncode}: {message}"
    if b'"exit-code"' not in probe.stdout:
        return "bwrap does not report exit statuses (--json-status-fd); it is too old"
    return None
