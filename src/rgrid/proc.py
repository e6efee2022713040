"""What this host's ``/proc`` says of a process, and its C library (Linux, as the grid's
sandbox is)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ctypes


@functools.cache
def libc() -> ctypes.CDLL:
    """The C library with ``errno`` kept (``ctypes.get_errno``), loaded once: the sandbox's
    mounts and namespaces call into it several times per execution. (``ctypes`` is imported
    here, not with the module: the CLI reads ``/proc`` through this module on every command.)"""
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and has not ended (a zombie, ended but not yet reaped by
    its parent, has). Whoever owns it: no signal is sent."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return False
