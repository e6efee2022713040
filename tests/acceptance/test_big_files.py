"""Acceptance: a 2 GiB input and a 2 GiB output round trip byte-identical, and neither the CLI
nor the server holds them in memory: both stay under 150 MiB of peak RSS, read from /proc
(issue 8)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from tests.conftest import RGRID_BIN, Cli, make_server

from rgrid import digests

GiB = 1024**3
MiB = 1024**2
SCRIPT = """\
import shutil, sys
shutil.copyfile(sys.argv[1], "copy.zip")
print("copied")
"""


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.timeout(300)  # 4 GiB written and read on a 2-core machine: its own budget
def test_two_gib_in_and_out_with_bounded_memory(tmp_path: Path) -> None:
    server = make_server(tmp_path, RGRID_MAX_OUTPUT_BYTES=str(3 * GiB))
    server.start()
    try:
        workdir = tmp_path / "project"
        workdir.mkdir()
        (workdir / "copy.py").write_text(SCRIPT)
        big = workdir / "big.zip"
        with big.open("wb") as handle:
            block = os.urandom(64 * MiB)
            for i in range(2 * GiB // len(block)):
                handle.write(bytes([i]) + block[1:])  # no two blocks alike
        env = Cli(cwd=workdir, env=server.cli_env()).env
        cli = subprocess.Popen(
            [str(RGRID_BIN), "run", "--yes", "copy.py", "big.zip"],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        cli_peak = 0.0
        while cli.poll() is None:  # VmHWM only grows: the last reading is the peak
            try:
                cli_peak = max(cli_peak, peak_rss_mib(cli.pid))
            except (OSError, AssertionError):
                pass
            time.sleep(0.05)
        out, err = cli.communicate()
        assert cli.returncode == 0, err.decode()
        assert out == b"copied\n"
        assert (workdir / "copy.zip").stat().st_size == 2 * GiB
        assert digests.of_file(workdir / "copy.zip") == digests.of_file(big)
        assert server.process is not None
        server_peak = peak_rss_mib(server.process.pid)
        assert cli_peak < 150, cli_peak
        assert server_peak < 150, server_peak
    finally:
        server.stop()
