"""The C allocator's thresholds in a grid server process (glibc's ``mallopt``; elsewhere
nothing changes).

An upload arrives in pieces of up to 1 MiB (``rgrid.api.httpbody``), each allocated by the
socket read and freed once written. By default glibc gives a piece that big a mapping of its
own, or takes it from the top of the heap and hands the memory back to the kernel when it is
freed: either way every piece lands on pages the kernel must supply afresh, and on a virtual
machine a new page is slow. With the thresholds below, buffers up to ``MMAP_THRESHOLD_BYTES``
come from the heap, and up to ``TRIM_THRESHOLD_BYTES`` of freed memory at its top is kept for
the next ones: a bounded amount of memory held on to, for pages that stay warm. bench/receive:
receiving 1 GiB took 1.00 s without them, 0.49 s with them (docs/performance.md).
"""

from __future__ import annotations

import ctypes
import sys

from rgrid import proc

#: ``mallopt`` parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: allocations below this come from the heap (glibc's default starts at 128 KiB)
MMAP_THRESHOLD_BYTES = 2 * 1024 * 1024
#: free memory at the heap's top kept rather than handed back to the kernel
TRIM_THRESHOLD_BYTES = 8 * 1024 * 1024


def tune() -> bool:
    """Set the thresholds; whether the C library took them."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = proc.libc().mallopt
    except (OSError, AttributeError):  # no mallopt in this C library
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
