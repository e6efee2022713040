"""Acceptance: the grid keeps room on its own disk (issue 13, item 5).

The grid's home is a small filesystem of its own (a 400 MiB tmpfs mounted for the test), with a
150 MiB reserve: a script that writes into the reserve is stopped (``disk_limit``, under its own
--disk) while the grid keeps serving, and while the disk is below the reserve nothing new starts;
freeing the space lets the queued run go.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.acceptance.conftest import json_of, run_id, status_of, wait_for
from tests.conftest import Cli, LiveServer, make_server

RESERVE = 150 * 1024**2


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small-disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.fail("this test mounts a tmpfs: run it as root (as CI does)")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def grid_on_small_disk(small_disk: Path) -> Iterator[LiveServer]:
    server = make_server(small_disk, RGRID_DISK_RESERVE_BYTES=str(RESERVE))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_script_eating_the_reserve_is_stopped_and_nothing_starts_below_it(
    grid_on_small_disk: LiveServer, small_disk: Path, workdir: Path
) -> None:
    cli = Cli(cwd=workdir, env=grid_on_small_disk.cli_env())
    # written at a pace the grid's disk poll (every 0.25 s) sees: a tmpfs would take 350 MiB
    # in a fraction of a second, before any poll
    (workdir / "fill.py").write_text(
        "import time\n"
        "with open('fill.bin', 'wb') as f:\n"
        "    for _ in range(350):\n"
        "        f.write(b'x' * 1024**2)\n"
        "        f.flush()\n"
        "        time.sleep(0.01)\n"
        "print('filled')\n"
    )
    (workdir / "ok.py").write_text("print('still here')\n")

    filled = cli("run", "--disk", "1GiB", "--max-retries", "0", "fill.py")

    assert filled.returncode != 0, filled.stdout
    status = status_of(cli, run_id(filled))
    assert status["failure_class"] == "disk_limit", status
    assert "nearly full" in status["cause"]
    assert cli("run", "ok.py").stdout == "still here\n"  # the grid works on

    # the disk filled from outside (another program of the host): nothing new starts
    ballast = small_disk / "ballast"
    stats = os.statvfs(small_disk)
    free = stats.f_bavail * stats.f_frsize
    ballast.write_bytes(b"\0" * (free - RESERVE // 2))
    try:
        queued = cli("run", "--no-cache", "--detach", "ok.py")
        assert queued.returncode == 0, queued.stderr
        execution = queued.stdout.strip()
        for _ in range(20):  # two seconds: the dispatcher polls each second
            assert status_of(cli, execution)["state"] == "queued"
            time.sleep(0.1)
        assert json_of(cli("status", execution, "--json"))["started_at"] is None
    finally:
        ballast.unlink()
    wait_for(lambda: status_of(cli, execution)["state"] == "succeeded", timeout=30)
