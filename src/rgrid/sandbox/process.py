"""ProcessSandbox, and the subprocess machinery every sandbox shares: start in a new session under
rlimits, stream the output, enforce the wall clock, kill the group and reap with rusage."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import functools
import logging
import os
import resource
import signal
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO

from rgrid import errors
from rgrid.sandbox import (
    LimitHit,
    OutputCallback,
    SandboxResult,
    SandboxSpec,
    TerminalSpec,
    limits,
    lines,
)

logger = logging.getLogger(__name__)

STRENGTH = (
    "weaker: rlimits and process group only, no filesystem or network isolation; paths named "
    "outside the working directory go under _inputs/ and the arguments naming them are rewritten"
)


class ProcessSandbox:
    """A plain child process in its own session, under rlimits; it dies with the grid.

    It sees the host filesystem and network as the grid's user does (``spec.ro_binds`` and
    ``spec.network`` are not enforced). A grandchild that calls setsid() escapes the group
    kill, and if the grid itself dies only the direct child is killed. Use it only where
    bubblewrap cannot run.
    """

    name = "process"
    strength = STRENGTH

    async def run(
        self,
        spec: SandboxSpec,
        on_output: OutputCallback,
        cancel: asyncio.Event | None = None,
    ) -> SandboxResult:
        """See ``rgrid.sandbox.Sandbox.run``."""
        if not spec.network:
            logger.warning(
                "the process sandbox cannot take the network away",
                extra={"action": "sandbox_network_kept"},
            )
        return await run_command(spec.argv, spec, on_output, cancel)


async def run_command(
    argv: list[str],
    spec: SandboxSpec,
    on_output: OutputCallback,
    cancel: asyncio.Event | None = None,
    pass_fds: tuple[int, ...] = (),
    dies_with_parent: bool = False,
    on_spawned: Callable[[int], Awaitable[None]] | None = None,
    spawner: concurrent.futures.Executor | None = None,
) -> SandboxResult:
    """Run ``argv`` (the script, or a wrapper such as bwrap around it) with ``spec``'s working
    directory, environment and limits; the contract of ``Sandbox.run`` otherwise.

    ``dies_with_parent``: ``argv`` itself makes sure it dies with the grid (bwrap's
    ``--die-with-parent``) and ``on_spawned`` sets the rlimits on what runs the command
    (prlimit(2)), so the child needs nothing done before exec: no ``preexec_fn``, hence a
    vfork rather than a fork of the grid.
    ``on_spawned`` is awaited with the child's pid before its output is read (bwrap waits
    for it there: the group and network are put in place).
    ``spawner``: the thread to start the child from (it inherits that thread's namespaces).
    """
    start = functools.partial(_spawn, argv, spec, pass_fds, dies_with_parent)
    if spawner is None:
        popen = start()
    else:
        popen = await asyncio.get_running_loop().run_in_executor(spawner, start)
    child = _Child(popen)
    started = time.monotonic()
    pumps = lines.OutputPumps(on_output, child.kill)
    try:
        if on_spawned is not None:
            await on_spawned(child.pid)
        pumps.start({"stdout": child.stdout, "stderr": child.stderr})
        async with (
            limits.Watchdog(child.pid, spec.timeout_s, cancel) as watchdog,
            limits.DiskGuard(
                child.pid,
                [str(path) for path in written_dirs(spec)],
                spec.disk_bytes,
                spec.disk_reserve_bytes,
                file_limit_bytes(spec),
            ) as disk,
        ):
            await child.exited()
        status, rusage = child.reap()
        duration_s = time.monotonic() - started
        await pumps.drain()
    finally:
        if not child.reaped:  # we were cancelled or broke: leave nothing running
            child.abandon()
        pumps.abort()  # a no-op once drained; else stop calling on_output for a cancelled run
    code = os.waitstatus_to_exitcode(status)
    logger.debug("process %d ended with %d", child.pid, code, extra={"action": "sandbox_finished"})
    return SandboxResult(
        returncode=code if code >= 0 else None,
        signal=-code if code < 0 else None,
        timed_out=watchdog.timed_out,
        cancelled=watchdog.cancelled,
        duration_s=duration_s,
        # Linux reports KiB
        max_rss_bytes=rusage.ru_maxrss * 1024 if rusage.ru_maxrss > 0 else None,
        limit_hit=LimitHit.DISK if disk.exceeded else None,
    )


def written_dirs(spec: SandboxSpec) -> tuple[Path, ...]:
    """Where what the script writes is kept (see ``SandboxSpec.written_dirs``)."""
    if spec.written_dirs is not None:
        return spec.written_dirs
    return (spec.workdir, *(host for host, _ in spec.rw_binds))


def file_limit_bytes(spec: SandboxSpec) -> int:
    """RLIMIT_FSIZE: one file alone cannot pass the disk limit either."""
    return min(spec.max_file_bytes, spec.disk_bytes)


def spec_rlimits(spec: SandboxSpec) -> limits.Rlimits:
    return limits.rlimits(
        spec.memory_bytes, spec.max_processes, file_limit_bytes(spec), spec.max_open_files
    )


def _spawn(
    argv: list[str],
    spec: SandboxSpec,
    pass_fds: tuple[int, ...],
    dies_with_parent: bool,
) -> subprocess.Popen[bytes]:
    if not argv:
        raise errors.SandboxError("nothing to run: argv is empty")
    argv = limits.nice_argv(spec.niceness, argv)
    preexec_fn = None if dies_with_parent else limits.preexec(spec_rlimits(spec))
    try:
        # Popen rather than asyncio.create_subprocess_exec (which wraps the same Popen call):
        # asyncio's child watcher would reap the child itself and lose its rusage.
        # The stdin file is opened here, outside the sandbox: bwrap passes fd 0 through, so
        # the script reads it without the file being in its view.
        stdin = spec.stdin_path.open("rb") if spec.stdin_path is not None else None
    except OSError as exc:
        raise errors.SandboxError(f"could not open the stdin {spec.stdin_path}: {exc}") from exc
    terminals = _Terminals()
    try:
        terminals.open(spec.terminal)
        process = subprocess.Popen(
            argv,
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=terminals.follower("stdout"),
            stderr=terminals.follower("stderr"),
            cwd=spec.workdir,
            env=spec.env,
            start_new_session=True,
            preexec_fn=preexec_fn,
            pass_fds=pass_fds,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        terminals.close_leaders()
        raise errors.SandboxError(f"could not start {argv[0]}: {exc}") from exc
    except BaseException:
        terminals.close_leaders()
        raise
    finally:
        if stdin is not None:
            stdin.close()  # the child has its own copy
        terminals.close_followers()  # the child has its own
    terminals.attach(process)
    logger.debug("started process %d", process.pid, extra={"action": "sandbox_started"})
    for pipe in (process.stdout, process.stderr):
        _widen(pipe)
    return process


class _Terminals:
    """Pseudo-terminals for the streams ``spec.terminal`` asks for: the child writes to the
    follower side (a terminal to it, of the user's size); we read the leader side like a
    pipe. Output processing is off (no ``\n`` → ``\r\n``): what is read is what it wrote."""

    def __init__(self) -> None:
        self._pairs: dict[str, tuple[int, int]] = {}

    def open(self, terminal: TerminalSpec | None) -> None:
        """One pair per stream asked for; on a failure the caller closes what was opened."""
        if terminal is None:
            return
        wanted = [
            name for name, on in (("stdout", terminal.stdout), ("stderr", terminal.stderr)) if on
        ]
        for name in wanted:
            leader, follower = os.openpty()
            self._pairs[name] = (leader, follower)  # closed by the caller if a step fails
            attributes = termios.tcgetattr(follower)
            attributes[1] &= ~termios.OPOST
            termios.tcsetattr(follower, termios.TCSANOW, attributes)
            size = struct.pack("HHHH", terminal.lines, terminal.columns, 0, 0)
            fcntl.ioctl(follower, termios.TIOCSWINSZ, size)
            os.set_blocking(leader, False)

    def follower(self, stream: str) -> int:
        pair = self._pairs.get(stream)
        return pair[1] if pair is not None else subprocess.PIPE

    def close_followers(self) -> None:
        for _, follower in self._pairs.values():
            with contextlib.suppress(OSError):
                os.close(follower)

    def close_leaders(self) -> None:
        for leader, _ in self._pairs.values():
            with contextlib.suppress(OSError):
                os.close(leader)

    def attach(self, process: subprocess.Popen[bytes]) -> None:
        """The leaders as the process's stdout/stderr, read as its pipes are."""
        for name, (leader, _) in self._pairs.items():
            setattr(process, name, open(leader, "rb", buffering=0))


async def readable(fd: int, timeout_s: float | None = None) -> bool:
    """Wait on the event loop until ``fd`` is readable (True) or ``timeout_s`` passed (False)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def on_ready() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, on_ready)
    try:
        async with asyncio.timeout(timeout_s):
            await ready
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)
    return True


PIPE_BYTES = 1024 * 1024


def _widen(pipe: IO[bytes] | None) -> None:
    """A 1 MiB pipe instead of 64 KiB: a chatty script keeps writing while we catch up."""
    if pipe is not None:
        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)


class _Child:
    """The started process, which we reap ourselves with wait4 to get its rusage.

    Its pid is also its process group id; while it is unreaped (even as a zombie) the kernel
    cannot reuse that id, so killing the group is only done before reaping.
    """

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None and process.stderr is not None
        self.pid = process.pid
        self.stdout = process.stdout
        self.stderr = process.stderr
        self.reaped = False
        self._process = process

    def kill(self) -> None:
        """SIGKILL the whole group, if its id is still ours."""
        if not self.reaped:
            limits.kill_group(self.pid, signal.SIGKILL)

    async def exited(self) -> None:
        """Wait until the process has exited, leaving it unreaped."""
        loop = asyncio.get_running_loop()
        try:
            pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # no pidfd (old kernel): block a thread instead
            wait = functools.partial(os.waitid, os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
            await loop.run_in_executor(None, wait)
            return
        try:
            await readable(pidfd)
        finally:
            os.close(pidfd)

    def reap(self) -> tuple[int, resource.struct_rusage]:
        """Kill what is left of the group, then reap the exited process."""
        self.kill()
        _, status, rusage = os.wait4(self.pid, 0)
        self.reaped = True
        # tell Popen, or its __del__ would keep polling a pid that is no longer ours
        self._process.returncode = os.waitstatus_to_exitcode(status)
        return status, rusage

    def abandon(self) -> None:
        """Kill the group and reap it in the background, without waiting."""
        self.kill()
        threading.Thread(target=self.reap, name=f"reap-{self.pid}", daemon=True).start()
