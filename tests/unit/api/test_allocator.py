"""The grid server's allocator thresholds are taken by this machine's C library."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rgrid.api import allocator


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_the_c_library_takes_the_thresholds() -> None:
    # in a fresh interpreter: the thresholds are the process's for good
    done = subprocess.run(
        [sys.executable, "-c", "from rgrid.api import allocator; print(allocator.tune())"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "True"


def test_the_thresholds_cover_a_body_piece() -> None:
    from rgrid.api.httpbody import BODY_READ_BYTES

    # a piece read while a body arrives comes from the heap, and one freed is kept warm
    assert allocator.MMAP_THRESHOLD_BYTES > BODY_READ_BYTES
    assert allocator.TRIM_THRESHOLD_BYTES >= 4 * BODY_READ_BYTES
