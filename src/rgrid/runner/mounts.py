"""The mounts a runner makes on its host for an execution: its work directory as an overlay on
the tree's layer (``layers``), and its /tmp as a tmpfs of its own. Both are unmounted (lazily)
when the execution ends, and before a retry reuses the place."""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import functools
import logging
import os
import re
from pathlib import Path

from rgrid import errors
from rgrid.proc import libc

logger = logging.getLogger(__name__)

MNT_DETACH = 2
MS_NOSUID = 0x2
MS_NODEV = 0x4
#: characters the kernel's mount option parser would take for separators
_OPTION_SEPARATORS = (",", ":", "\\", "\n")


@functools.cache
def available(fstype: str) -> bool:
    """``fstype`` can be mounted here: the grid is root and the kernel has it."""
    if os.geteuid() != 0:
        return False
    try:
        return fstype in Path("/proc/filesystems").read_text().split()
    except OSError:
        return False


def _mount(source: str, target: Path, fstype: str, flags: int, options: str) -> None:
    if libc().mount(source.encode(), os.fsencode(target), fstype.encode(), flags, options.encode()):
        code = ctypes.get_errno()
        raise errors.SandboxError(f"could not mount the execution's {fstype}: {os.strerror(code)}")


@dataclasses.dataclass(frozen=True)
class Overlay:
    """An execution's work directory: ``lower`` (read-only) under ``upper`` at ``merged``."""

    lower: Path
    upper: Path
    scratch: Path  # the overlay's own work directory (same filesystem as ``upper``)
    merged: Path

    def mount(self) -> None:
        for path in (self.lower, self.upper, self.scratch):
            if any(mark in str(path) for mark in _OPTION_SEPARATORS):
                raise errors.SandboxError(f"cannot mount an overlay from {path}: odd characters")
        # metacopy off: a file whose mode alone changes is still copied up whole, so the upper
        # layer holds every byte the run changed; no redirects: a directory of the layer cannot
        # be renamed (EXDEV, as across filesystems) rather than leave a pointer into it
        options = (
            f"lowerdir={self.lower},upperdir={self.upper},workdir={self.scratch},"
            "metacopy=off,redirect_dir=off,index=off"
        )
        _mount("overlay", self.merged, "overlay", 0, options)

    def unmount(self) -> None:
        unmount(self.merged)


def unmount(path: Path) -> None:
    """Detach whatever is mounted at ``path`` (nothing: no error)."""
    if libc().umount2(os.fsencode(path), MNT_DETACH) != 0:
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOENT):
            logger.warning(
                "could not unmount %s: %s",
                path,
                os.strerror(code),
                extra={"action": "overlay_left"},
            )


def mount_tmpfs(target: Path) -> None:
    """A tmpfs (mode 1777, as /tmp is) at ``target``: its pages are charged to the memory
    cgroup of whoever writes them, so a script's /tmp still counts against its ``--memory``."""
    _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")


def unmount_all_under(root: Path) -> int:
    """Detach every mount below ``root``, deepest first (what a killed worker left: its
    executions' overlays and scratch tmpfs); how many there were."""
    prefix = os.fsencode(root.resolve()) + b"/"
    try:
        with open("/proc/self/mountinfo", "rb") as info:
            # field 5 is the mount point, with space, tab, newline and backslash octal-escaped
            points = [_unescape(f[4]) for f in map(bytes.split, info) if len(f) > 4]
    except OSError:
        return 0
    below = sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)
    for point in below:
        unmount(Path(os.fsdecode(point)))
    return len(below)


def _unescape(field: bytes) -> bytes:
    return re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), field)
