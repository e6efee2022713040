"""BwrapSandbox: the process sandbox inside bubblewrap namespaces, and the bwrap command line."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import math
import os
import resource
import shutil
import signal
import stat
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

from rgrid import errors
from rgrid.sandbox import (
    LimitHit,
    OutputCallback,
    SandboxResult,
    SandboxSpec,
    cgroups,
    cpus,
    launch,
    network,
    process,
)

logger = logging.getLogger(__name__)

BWRAP = "bwrap"
STRENGTH = (
    "bubblewrap: read-only system, private /tmp, own PID/IPC/UTS namespaces, "
    "only the work directory writable"
)
NETWORK_ENV = "RGRID_SANDBOX_NETWORK"
RESOLV_CONF = "/etc/resolv.conf"
#: host directories the script needs to run programs; symlinks (merged /usr) are recreated
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/etc")
#: files under SYSTEM_PATHS that stay unreadable whatever their mode (all files of /etc that
#: others may not read are masked too, see ``masked_paths``)
MASKED_PATHS = ("/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-")
#: files under SYSTEM_PATHS that may be symlinks out of them (systemd-resolved: into /run)
LINKED_FILES = ("/etc/resolv.conf",)
STATUS_LIMIT_BYTES = 64 * 1024


class NetworkMode(StrEnum):
    """How a sandbox with the network on reaches it (``RGRID_SANDBOX_NETWORK``)."""

    #: its own namespace behind user-mode networking: the internet, not the host or its LAN
    ISOLATED = "isolated"
    #: the host's own network namespace, loopback services included (an operator's choice)
    HOST = "host"


@dataclasses.dataclass(frozen=True)
class Plan:
    """The host-dependent parts of one bwrap command line."""

    #: None: no network at all (``--no-network``)
    network: NetworkMode | None = NetworkMode.ISOLATED
    #: the uid and gid the script runs as (via setpriv); None: as the grid's own user
    run_as: int | None = None
    status_fd: int | None = None
    info_fd: int | None = None
    block_fd: int | None = None
    #: the CPUs it runs on (``cpus.CpuSets``): the only ones its /sys says are online
    cpus: tuple[int, ...] | None = None


class BwrapSandbox:
    """The script in fresh mount, PID, IPC, UTS and network namespaces, as an unprivileged user,
    in a cgroup of its own.

    It sees a read-only /usr and /etc (secrets masked), ``spec.ro_binds``, a private /proc, /dev
    and /tmp, and its writable ``spec.workdir`` at the same path; nothing else of the host (not
    /root, /home, /var, /run or the grid's data). The environment is exactly ``spec.env``.
    Killing bwrap kills every process in its PID namespace, even ones that left our process
    group. Network on means user-mode networking (``network.py``) unless the operator chose the
    host's network.
    """

    name = "bwrap"
    strength = STRENGTH

    def __init__(self, executable: str = BWRAP, network_mode: NetworkMode | None = None) -> None:
        self._executable = executable
        self._network_mode = network_mode or configured_network_mode()
        self.strength = describe(self._network_mode)

    async def run(
        self,
        spec: SandboxSpec,
        on_output: OutputCallback,
        cancel: asyncio.Event | None = None,
    ) -> SandboxResult:
        """See ``rgrid.sandbox.Sandbox.run``; also raises ``errors.SandboxError`` when bwrap
        cannot set up the sandbox (its own message is then on the stderr stream)."""
        executable = shutil.which(self._executable)
        if executable is None:
            raise errors.SandboxError(
                "bubblewrap (bwrap) is not installed",
                hint="install it (apt-get install bubblewrap) or set RGRID_SANDBOX=process",
            )
        mode = self._network_mode if spec.network else None
        run_as = SANDBOX_UID if privilege_drop_available() else None
        async with contextlib.AsyncExitStack() as stack:
            launcher = await launch.take()
            stack.callback(launcher.finish)  # once the sandbox is gone
            limited = dataclasses.replace(spec, max_processes=_process_rlimit(spec))
            # its CPUs and its group's limits in one hop to the launcher's thread (each hop
            # costs the execution a millisecond or two on a busy grid)
            chosen = await _pin_and_limit(stack, launcher, spec)
            traffic_before: int | None = None
            if mode is NetworkMode.ISOLATED:
                namespace = await stack.enter_async_context(network.shared_pool().namespace())
                traffic_before = await launcher.call(
                    functools.partial(_join_and_count, namespace.path)
                )
            if run_as is not None:
                given = [] if spec.workdir_ready else [spec.workdir]
                handed = [*given, *(host for host, _ in spec.rw_binds)]
                if handed:  # in one thread hop: each costs an execution's start time under load
                    await asyncio.to_thread(_hand_over_all, handed, run_as)
            if run_as is None:
                await asyncio.to_thread(masked_paths)  # the first call walks /etc; cached after
            if launcher.group is not None:  # bwrap is born in it (its limits set above)
                handshake = _Handshake(None, limited, launcher.group)
            else:
                handshake = _Handshake(functools.partial(_make_group, spec), limited)
                # killed at once; deleted in the background: the kernel takes some ms to let
                # an emptied group go, and the execution need not wait for that
                stack.callback(handshake.discard_group)
            plan = Plan(
                mode,
                run_as,
                handshake.status_write,
                handshake.info_write,
                handshake.block_read,
                chosen,
            )
            argv = [executable, *command_args(spec, plan)]
            try:
                result = await process.run_command(
                    argv,
                    limited,
                    on_output,
                    cancel,
                    pass_fds=handshake.child_fds,
                    dies_with_parent=True,
                    on_spawned=handshake.release,
                    spawner=launcher.executor,
                )
            finally:
                status = handshake.finish()
            result = _normalise(result, status)
            if (group := handshake.group) is not None and result.limit_hit is None:
                result = dataclasses.replace(result, limit_hit=_group_limit(group.report()))
            return dataclasses.replace(
                result, network_used=await _network_used(mode, launcher, traffic_before)
            )


async def _pin_and_limit(
    stack: contextlib.AsyncExitStack, launcher: launch.Launcher, spec: SandboxSpec
) -> tuple[int, ...] | None:
    """On the launcher's thread: with ``spec.cpus``, take CPUs for the sandbox (given back
    with ``stack``) and pin the thread to them (bwrap and the script inherit its affinity);
    the limits of the launcher's group, where it has one. The CPUs taken, or None."""
    if not spec.cpus and launcher.group is None:
        return None  # nothing to do there: no hop
    sets = cpus.shared()

    def on_the_launcher() -> tuple[tuple[int, ...], str] | None:
        taken = sets.take(math.ceil(spec.cpus)) if spec.cpus else None
        try:
            if taken is not None:
                os.sched_setaffinity(0, taken[0])
            if launcher.group is not None:
                launcher.group.set_limits(_group_limits(spec, 1))
        except BaseException:
            if taken is not None:
                sets.give_back(*taken)
            raise
        return taken

    taken = await launcher.call(on_the_launcher)
    if taken is None:
        return None
    stack.callback(sets.give_back, *taken)
    return taken[0]


async def _network_used(
    mode: NetworkMode | None, launcher: launch.Launcher, before: int | None
) -> bool | None:
    """Network off: none was used. Its own namespace: its counters moved (every process of it
    is dead by now, so they are final). The host's network: not observed."""
    if mode is None:
        return False
    if before is None:
        return None
    return await launcher.call(network.traffic) > before


def describe(mode: NetworkMode) -> str:
    """What this host's bwrap sandbox gives, for doctor, /health and the server log."""
    found = cgroups.detect()
    user = (
        f"uid {SANDBOX_UID} without capabilities"
        if privilege_drop_available()
        else "the grid's user without capabilities"
    )
    group = f"a cgroup v{found.version} each" if found else "per-process limits only (no cgroup)"
    reach = (
        "the internet but not the host (user-mode network)"
        if mode is NetworkMode.ISOLATED
        else "the host's network, loopback included"
    )
    if mode is NetworkMode.ISOLATED and network.host_loopback():
        reach += (
            f", and the host's loopback at {network.SLIRP_GATEWAY} ({network.HOST_LOOPBACK_ENV})"
        )
    return f"{STRENGTH}; {user}; {group}; network on: {reach}"


SANDBOX_UID = 65534  # nobody: owns nothing on the host, so a script can change nothing there
INFO_TIMEOUT_S = 10.0


def configured_network_mode() -> NetworkMode:
    """``RGRID_SANDBOX_NETWORK`` (default isolated); isolated falls back to the host's network,
    with a warning, where user-mode networking cannot be had."""
    raw = os.environ.get(NETWORK_ENV, "").strip().lower() or NetworkMode.ISOLATED.value
    try:
        mode = NetworkMode(raw)
    except ValueError:
        raise errors.SandboxError(
            f"{NETWORK_ENV}={raw!r} is not a network mode", hint="use 'isolated' or 'host'"
        ) from None
    if mode is NetworkMode.ISOLATED and (problem := network.problem()) is not None:
        _warn_network_fallback(problem)
        return NetworkMode.HOST
    return mode


@functools.cache
def _warn_network_fallback(problem: str) -> None:
    logger.warning(
        "user-mode networking unavailable (%s): scripts with network on share the host's",
        problem,
        extra={"action": "sandbox_network_host"},
    )


@functools.cache
def privilege_drop_available() -> bool:
    """Scripts can be run as ``SANDBOX_UID``: the grid is root and util-linux setpriv exists."""
    return os.geteuid() == 0 and shutil.which("setpriv") is not None


def _join_and_count(namespace: Path) -> int:
    """In the launcher's thread: enter the network namespace, and read its traffic so far."""
    network.join(namespace)
    return network.traffic()


def _hand_over_all(directories: list[Path], uid: int) -> None:
    for directory in directories:
        _hand_over(directory, uid)


def _hand_over(workdir: Path, uid: int) -> None:
    """Give the work directory and what is in it (the inputs) to the script's user, except a
    file with other links: it is shared with the grid's store (a read-only input), and the
    script may replace it (the directory is its) but must never own it."""
    os.chown(workdir, uid, uid)
    for root, dirs, files in os.walk(workdir):
        for name in dirs:
            os.chown(os.path.join(root, name), uid, uid, follow_symlinks=False)
        for name in files:
            path = os.path.join(root, name)
            if os.lstat(path).st_nlink == 1:
                os.chown(path, uid, uid, follow_symlinks=False)


def _group_limits(spec: SandboxSpec, launchers: int = 0) -> cgroups.GroupLimits:
    """The group's bounds; ``launchers``: threads of the grid in it (counted as processes)."""
    return cgroups.GroupLimits(spec.memory_bytes, spec.max_processes + launchers, spec.cpus)


def _make_group(spec: SandboxSpec) -> cgroups.ExecutionGroup | None:
    found = cgroups.detect()
    if found is None:
        return None
    try:
        return found.create(_group_limits(spec))
    except OSError as exc:
        raise errors.SandboxError(f"could not make the execution's cgroup: {exc}") from exc


def _process_rlimit(spec: SandboxSpec) -> int:
    """RLIMIT_NPROC counts every process of a uid, and all scripts share one: with a cgroup the
    pids controller bounds each execution instead, and the rlimit is lifted."""
    return resource.RLIM_INFINITY if cgroups.detect() is not None else spec.max_processes


def _group_limit(report: cgroups.GroupReport) -> LimitHit | None:
    if report.oom_kills > 0:
        return LimitHit.MEMORY
    if report.fork_refusals > 0:
        return LimitHit.PROCESSES
    return None


class _Handshake:
    """The pipes between the grid and bwrap: bwrap reports its namespace's first pid on the
    info fd and waits on the block fd, so that pid is limited and in the execution's cgroup
    before the script starts; its exit status comes on the status fd.

    Either bwrap is born in the execution's cgroup (``group``: started from a thread in it,
    ``launch.py``), or the group is made now (``make_group``) and bwrap moved into it while it
    builds the namespaces.
    """

    def __init__(
        self,
        make_group: Callable[[], cgroups.ExecutionGroup | None] | None,
        spec: SandboxSpec,
        group: cgroups.ExecutionGroup | None = None,
    ) -> None:
        self._make_group = make_group
        self._rlimits = process.spec_rlimits(spec)
        self.group = group
        self.status_read, self.status_write = os.pipe()
        self.info_read, self.info_write = os.pipe()
        self.block_read, self.block_write = os.pipe()
        self._open = {self.status_write, self.info_write, self.block_read, self.info_read}
        self._open |= {self.block_write}

    @property
    def child_fds(self) -> tuple[int, ...]:
        return (self.status_write, self.info_write, self.block_read)

    def _close(self, fd: int) -> None:
        if fd in self._open:
            self._open.discard(fd)
            os.close(fd)

    async def release(self, pid: int) -> None:
        """Called once bwrap is started: limit it, put it in the group, let the script start."""
        self._close(self.info_write)
        self._close(self.block_read)
        if self._make_group is None:  # born in its group already
            info = await _read_info(self.info_read)
        else:
            making = asyncio.ensure_future(asyncio.to_thread(self._group_for, pid))
            try:
                info = await _read_info(self.info_read)
            finally:
                self.group = await making
        child = info.get("child-pid")
        if isinstance(child, int):
            # the namespace's first process forks the command, which inherits them; if that
            # cannot be done the command must not start unbounded
            try:
                for which, value in self._rlimits:
                    resource.prlimit(child, which, (value, value))
            except ProcessLookupError:
                pass  # bwrap failed and left: its status says why
            except OSError as exc:
                raise errors.SandboxError(f"could not limit the sandbox: {exc}") from exc
        if self._make_group is not None and self.group is not None and isinstance(child, int):
            with contextlib.suppress(OSError):  # gone: bwrap failed, its status says why
                self.group.add(child)
        with contextlib.suppress(OSError):  # EPIPE: bwrap failed and left; its status says why
            os.write(self.block_write, b"1")
        self._close(self.block_write)

    def _group_for(self, pid: int) -> cgroups.ExecutionGroup | None:
        """The execution's group with bwrap in it, made on a thread while bwrap builds the
        namespaces. Moving a process into a cgroup (v1) first waits out an RCU grace period
        (~10 ms here); one move soon after another does not: so bwrap goes in now, in
        parallel, and its namespace's first process (reported on the info fd) after, fast."""
        assert self._make_group is not None
        group = self._make_group()
        if group is not None:
            group.add(pid)
        return group

    def discard_group(self) -> None:
        """Remove the group this handshake made (a launcher's own is the launcher's)."""
        if self.group is not None and self._make_group is not None:
            cgroups.remove_later(self.group)

    def finish(self) -> list[dict[str, object]]:
        """Close what is left and return bwrap's status documents."""
        for fd in (self.status_write, self.info_write, self.block_read, self.info_read):
            self._close(fd)
        self._close(self.block_write)
        self._open.discard(self.status_read)
        return _read_status(self.status_read)


async def _read_info(fd: int) -> dict[str, object]:
    """bwrap's one JSON document on the info fd ({} if it failed before writing it)."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    data = b""
    deadline = loop.time() + INFO_TIMEOUT_S
    while (left := deadline - loop.time()) > 0:
        if not await process.readable(fd, left):
            return {}
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            continue
        if not chunk:
            break
        data += chunk
        with contextlib.suppress(ValueError):
            document = json.loads(data)
            return document if isinstance(document, dict) else {}
    return {}


def isolation_args(mode: NetworkMode | None, run_as: int | None = None) -> list[str]:
    """The bwrap options that build the sandbox around any command (no work directory);
    ``mode`` None is no network at all."""
    args = ["--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    if mode is None:
        args.append("--unshare-net")
    if run_as is None:
        # Without dropping them, a root grid would hand the script every capability (mount,
        # mknod). With run_as, setpriv drops them all on the way to the unprivileged user.
        args += ["--cap-drop", "ALL"]
    # No --new-session: the script must stay in our process group so the group kill reaches it.
    args += ["--proc", "/proc", "--dev", "/dev", "--perms", "01777", "--tmpfs", "/tmp"]
    # POSIX shared memory and semaphores (multiprocessing's locks and queues) live here; a
    # tmpfs charged to the execution's memory limit, like /tmp
    args += ["--perms", "01777", "--tmpfs", "/dev/shm"]
    for path in SYSTEM_PATHS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        else:
            args += ["--ro-bind-try", path, path]
    for path in LINKED_FILES:
        target = os.path.realpath(path)
        if not any(target.startswith(f"{system}/") for system in SYSTEM_PATHS):
            args += ["--ro-bind-try", target, target]
    if mode is NetworkMode.ISOLATED:
        # the namespace's own resolver (slirp's); the host's may be on a blocked address
        args += ["--ro-bind", str(network.resolv_conf()), os.path.realpath(RESOLV_CONF)]
    if run_as is None:
        # Only the grid's own user could read these; uid 65534, without groups, is refused
        # them by the kernel (they are exactly what others may not read): no mount needed.
        for path, is_dir in masked_paths():
            args += ["--tmpfs", path] if is_dir else ["--ro-bind", "/dev/null", path]
    return args


def _drop_privileges(uid: int) -> list[str]:
    """setpriv to ``uid``: no capabilities of any kind left, none to be gained (no_new_privs)."""
    return [
        "setpriv",
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--ambient-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
    ]


def command_args(spec: SandboxSpec, plan: Plan | None = None) -> list[str]:
    """Everything after ``bwrap`` on its command line for ``spec``.

    Mounts come after ``--tmpfs /tmp`` (and ``spec.tmp_dir`` over it) so a work directory
    under /tmp is bound on top of it; then the root is made read-only, leaving only the work
    directory and /tmp writable.
    The environment is not on the command line (other users can read that): the bwrap process
    is started with exactly ``spec.env`` and passes it through.
    """
    plan = plan or Plan(network=NetworkMode.ISOLATED if spec.network else None)
    args = isolation_args(plan.network, plan.run_as)
    workdir = Path(spec.workdir).absolute()
    inside = spec.workdir_inside or workdir
    if spec.tmp_dir is not None:
        # before the places below are made: those under /tmp are then made in it
        args += ["--bind", str(spec.tmp_dir), "/tmp"]
    mounts = [
        *(("--ro-bind", host, dest) for host, dest in spec.ro_binds),
        ("--bind", workdir, inside),
        *(("--bind", host, dest) for host, dest in spec.rw_binds),
    ]
    args += _parents([str(dest) for _, _, dest in mounts])
    # outer places first: a directory mounted inside another mounted one must come after it
    for option, host, dest in sorted(mounts, key=lambda mount: len(mount[2].parts)):
        args += [option, str(host), str(dest)]
    if plan.cpus:
        args += _parents([cpus.ONLINE])
        args += ["--ro-bind", str(cpus.online_file(plan.cpus)), cpus.ONLINE]
    args += ["--chdir", str(inside)]
    args += ["--remount-ro", "/"]  # last: bwrap creates mount points in the root tmpfs
    for option, fd in (
        ("--json-status-fd", plan.status_fd),
        ("--info-fd", plan.info_fd),
        ("--block-fd", plan.block_fd),
    ):
        if fd is not None:
            args += [option, str(fd)]
    drop = _drop_privileges(plan.run_as) if plan.run_as is not None else []
    return [*args, "--", *drop, *spec.argv]


def _parents(destinations: list[str]) -> list[str]:
    """Make the directories above each mount point traversable by anyone: bwrap would copy the
    host's modes (a work directory under /root or a 0700 temporary directory would be out of the
    unprivileged user's reach)."""
    made: dict[str, None] = {}
    for destination in destinations:
        for parent in reversed(Path(destination).parents):
            path = str(parent)
            if path in ("/", "/tmp") or any(
                path == system or path.startswith(f"{system}/") for system in SYSTEM_PATHS
            ):
                continue
            made.setdefault(path)
    return [arg for path in made for arg in ("--perms", "0755", "--dir", path)]


@functools.cache
def masked_paths() -> tuple[tuple[str, bool], ...]:
    """What of /etc others may not read (shadow files and their backups, private keys):
    (path, is a directory) to hide in the sandbox, found once."""
    found: list[tuple[str, bool]] = [(p, False) for p in MASKED_PATHS if os.path.isfile(p)]
    for root, dirs, files in os.walk("/etc"):
        for name in list(dirs):
            path = os.path.join(root, name)
            if not os.path.islink(path) and not os.stat(path).st_mode & stat.S_IXOTH:
                found.append((path, True))
                dirs.remove(name)
        for name in files:
            path = os.path.join(root, name)
            with contextlib.suppress(OSError):
                info = os.lstat(path)
                if stat.S_ISREG(info.st_mode) and not info.st_mode & stat.S_IROTH:
                    found.append((path, False))
    return tuple(dict.fromkeys(found))


def _read_status(fd: int) -> list[dict[str, object]]:
    """The JSON documents bwrap wrote to its status fd; closes ``fd``."""
    try:
        os.set_blocking(fd, False)  # bwrap is gone, so what it wrote is there or never will be
        data = os.read(fd, STATUS_LIMIT_BYTES)
    except BlockingIOError:
        data = b""
    finally:
        os.close(fd)
    documents: list[dict[str, object]] = []
    decoder = json.JSONDecoder()
    text, index = data.decode(errors="replace"), 0
    while (index := _skip_space(text, index)) < len(text):
        try:
            document, index = decoder.raw_decode(text, index)
        except ValueError:
            break
        if isinstance(document, dict):
            documents.append(document)
    return documents


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index].isspace():
        index += 1
    return index


def _normalise(result: SandboxResult, status: list[dict[str, object]]) -> SandboxResult:
    """Turn bwrap's report into the script's: bwrap exits 128+N when the script died of signal N.

    That is ambiguous with a script exiting 128+N by itself (``--json-status-fd`` reports the
    same number); the exit code is the same either way. No "exit-code" document means bwrap
    failed before the script ran.
    """
    exited = any("exit-code" in document for document in status)
    code = result.returncode
    if code is None or code == 0:
        return result
    if not exited and not (result.timed_out or result.cancelled):
        logger.warning("bwrap failed with %d", code, extra={"action": "sandbox_failed"})
        raise errors.SandboxError(
            f"bubblewrap could not start the script (exit status {code})",
            hint="its message is the last line of the script's stderr",
        )
    if exited and 0 < code - 128 < signal.NSIG:
        return dataclasses.replace(result, returncode=None, signal=code - 128)
    return result
