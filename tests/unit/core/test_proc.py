"""``rgrid.proc.alive``: a running process, one that ended but is not reaped, and none."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from rgrid import proc


def test_a_process_is_alive_until_it_ends_even_unreaped() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert proc.alive(child.pid)
        assert proc.alive(os.getpid())
    finally:
        child.kill()
    deadline = time.monotonic() + 10
    while proc.alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.01)  # not reaped yet (no wait() below): a zombie, which has ended
    assert not proc.alive(child.pid)
    child.wait()
    assert not proc.alive(child.pid)
    assert not proc.alive(2**22 + 1)  # above the kernel's largest pid
