"""Start writing a file's new bytes to disk while more arrive, so that the fsync which makes a
blob durable finds little left to do (Linux ``sync_file_range``; elsewhere nothing happens).

Measured here (docs/performance.md): writing and hashing 1 GiB then fsync took 2.0-2.6 s, of
which the fsync 0.6-0.7 s; with writeback started after every 4 MiB, 1.4 s and the fsync ~0.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator
from typing import IO

#: SYNC_FILE_RANGE_WRITE: start writing the dirty pages of the range, do not wait for them
_WRITE = 2


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    from rgrid import proc

    try:
        function = proc.libc().sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def start(fd: int, offset: int) -> None:
    """Ask the kernel to begin writing what ``fd`` holds from ``offset`` to its end, without
    waiting. A hint: failures are ignored (the fsync that follows is what counts)."""
    function = _sync_file_range()
    if function is not None:
        function(fd, offset, 0, _WRITE)  # 0 bytes: up to the end of the file


@contextlib.contextmanager
def pushed(handle: IO[bytes]) -> Iterator[None]:
    """What the block writes to ``handle`` is flushed and its writeback started at the end."""
    offset = handle.tell()
    yield
    handle.flush()
    start(handle.fileno(), offset)
