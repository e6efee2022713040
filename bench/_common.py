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
