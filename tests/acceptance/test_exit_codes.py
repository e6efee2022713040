"""Acceptance: `rgrid run` exits as the script did (issue 2, item 2; SPEC §4.8)."""

from __future__ import annotations

import time
from pathlib import Path

from tests.acceptance.conftest import assert_no_process_with, run_id, status_of, unique_marker
from tests.conftest import Cli

SPAWN_AND_SLEEP = """\
import subprocess, sys, time
marker = sys.argv[1]
sleeper = [sys.executable, "-c", "import time; time.sleep(300)"]
subprocess.Popen([*sleeper, marker + "-child"])
subprocess.Popen([*sleeper, marker + "-own-session"], start_new_session=True)
subprocess.Popen(["sh", "-c", "sleep 300; echo done", marker + "-shell"])
print("children started", flush=True)
time.sleep(60)
print("never printed")
"""


def test_sys_exit_code_is_the_cli_exit_code(cli: Cli, workdir: Path) -> None:
    (workdir / "three.py").write_text("import sys\nprint('bye')\nsys.exit(3)\n")

    result = cli("run", "three.py")

    assert result.returncode == 3
    assert result.stdout == "bye\n"
    status = status_of(cli, run_id(result))
    assert (status["state"], status["exit_code"], status["failure_class"]) == (
        "failed",
        3,
        "script_error",
    )


def test_killed_by_signal_9_exits_137(cli: Cli, workdir: Path) -> None:
    (workdir / "kill.py").write_text(
        "import os\nprint('before', flush=True)\nos.kill(os.getpid(), 9)\nprint('after')\n"
    )

    result = cli("run", "kill.py")

    assert result.returncode == 137
    assert result.stdout == "before\n"
    status = status_of(cli, run_id(result))
    assert status["state"] == "failed" and status["exit_code"] == 137
    assert "SIGKILL" in (status["cause"] or "")


def test_timeout_exits_124_and_leaves_no_process_behind(cli: Cli, workdir: Path) -> None:
    marker = unique_marker("timeout")
    (workdir / "slow.py").write_text(SPAWN_AND_SLEEP)

    started = time.monotonic()
    result = cli("run", "--timeout", "2s", "slow.py", marker, timeout=60)
    elapsed = time.monotonic() - started

    assert result.returncode == 124, result.stderr
    assert result.stdout == "children started\n"
    assert 2.0 <= elapsed < 10.0, f"took {elapsed:.1f}s"
    assert "timeout" in result.stderr
    status = status_of(cli, run_id(result))
    assert status["state"] == "failed"
    assert status["failure_class"] == "timeout"
    assert status["exit_code"] == 124
    # the whole process tree died with it: the script, its children, even one in its own session
    assert_no_process_with(marker)
