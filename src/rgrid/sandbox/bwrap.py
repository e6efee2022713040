"""BwrapSandbox: the process sandbox inside bubblewrap namespaces, and the bwrap command line."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import shutil
import signal
from pathlib import Path

from rgrid import errors
from rgrid.sandbox import OutputCallback, SandboxResult, SandboxSpec, process

logger = logging.getLogger(__name__)

BWRAP = "bwrap"
STRENGTH = (
    "bubblewrap: read-only system, private /tmp, own PID/IPC/UTS namespaces, no capabilities, "
    "only the work directory writable, optional network isolation"
)
#: host directories the script needs to run programs; symlinks (merged /usr) are recreated
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/etc")
#: files under SYSTEM_PATHS that stay unreadable: the script runs as the grid's user
MASKED_PATHS = ("/etc/shadow", "/etc/gshadow")
#: files under SYSTEM_PATHS that may be symlinks out of them (systemd-resolved: into /run)
LINKED_FILES = ("/etc/resolv.conf",)
STATUS_LIMIT_BYTES = 64 * 1024


class BwrapSandbox:
    """The script in fresh mount, PID, IPC and UTS namespaces (and network, unless allowed).

    It sees a read-only /usr and /etc, ``spec.ro_binds``, a private /proc, /dev and /tmp, and
    its writable ``spec.workdir`` at the same path; nothing else of the host (not /root, /home,
    /var, /run or the grid's data). The environment is exactly ``spec.env``. Killing bwrap
    kills every process in its PID namespace, even ones that left our process group.
    """

    name = "bwrap"
    strength = STRENGTH

    def __init__(self, executable: str = BWRAP) -> None:
        self._executable = executable

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
        status_read, status_write = os.pipe()
        try:
            argv = [executable, *command_args(spec, status_fd=status_write)]
            result = await process.run_command(
                argv, spec, on_output, cancel, pass_fds=(status_write,), dies_with_parent=True
            )
        finally:
            os.close(status_write)
            status = _read_status(status_read)
        return _normalise(result, status)


def isolation_args(network: bool) -> list[str]:
    """The bwrap options that build the sandbox around any command (no work directory)."""
    args = ["--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    if not network:
        args.append("--unshare-net")
    # Without dropping them, a root grid would hand the script every capability (mount, mknod).
    # No --new-session: the script must stay in our process group so the group kill reaches it.
    args += ["--cap-drop", "ALL", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for path in SYSTEM_PATHS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        else:
            args += ["--ro-bind-try", path, path]
    for path in LINKED_FILES:
        target = os.path.realpath(path)
        if not any(target.startswith(f"{system}/") for system in SYSTEM_PATHS):
            args += ["--ro-bind-try", target, target]
    for path in MASKED_PATHS:
        if os.path.exists(path):
            args += ["--ro-bind", "/dev/null", path]
    return args


def command_args(spec: SandboxSpec, status_fd: int | None = None) -> list[str]:
    """Everything after ``bwrap`` on its command line for ``spec``.

    Mounts come after ``--tmpfs /tmp`` so a work directory under /tmp is bound on top of it;
    then the root is made read-only, leaving only the work directory and /tmp writable.
    The environment is not on the command line (other users can read that): the bwrap process
    is started with exactly ``spec.env`` and passes it through.
    """
    args = isolation_args(spec.network)
    for host, inside in spec.ro_binds:
        args += ["--ro-bind", str(host), str(inside)]
    workdir = str(Path(spec.workdir).absolute())
    args += ["--bind", workdir, workdir, "--chdir", workdir]
    args += ["--remount-ro", "/"]  # last: bwrap creates mount points in the root tmpfs
    if status_fd is not None:
        args += ["--json-status-fd", str(status_fd)]
    return [*args, "--", *spec.argv]


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
