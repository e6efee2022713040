"""``rgrid.proc``: ``alive`` for a running process, one that ended but is not reaped, and none;
the C library loaded once, and only when asked for (the CLI reads ``/proc`` through this module
on every command and must not pay for ``ctypes``)."""

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


def test_the_c_library_is_loaded_once() -> None:
    assert proc.libc() is proc.libc()


def test_finding_the_local_grid_does_not_import_ctypes() -> None:
    fresh = "import sys, rgrid.client.daemon; print('ctypes' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", fresh], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
