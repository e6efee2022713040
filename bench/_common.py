"""Pieces the bench scripts share (they run as `python bench/<name>.py`, so this imports as
`_common`)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def real_python() -> str:
    """The interpreter behind `python3` on PATH, resolved once (not the shim)."""
    out = subprocess.run(
        ["python3", "-c", "import sys; print(sys.executable)"], capture_output=True, text=True
    )
    return out.stdout.strip() or sys.executable


def timed(argv: Sequence[str], runs: int, cwd: Path, env: dict[str, str]) -> list[float]:
    """Wall-clock seconds of ``runs`` runs of ``argv``; a failed run ends the bench."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True)
        samples.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{argv} failed: {done.stderr.decode()[-500:]}")
    return samples


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kill_processes_mentioning(text: str) -> int:
    """SIGKILL every process whose command line mentions ``text`` (a Ray temp dir: how a bench
    stops the Ray it started, never with `ray stop`, which stops every Ray of the machine)."""
    import os
    import signal

    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if text.encode() in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
        except OSError:
            continue
    return killed
