"""Acceptance: with no grid configured, `rgrid run` starts the local grid daemon (issue 2)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path

from tests.conftest import Cli


def _kill_daemon(home: Path) -> None:
    """Last resort if `rgrid server stop` failed: end the daemon this test started, by its pid."""
    with contextlib.suppress(OSError, ValueError, KeyError):
        pid = int(json.loads((home / "server.json").read_text())["pid"])
        os.kill(pid, signal.SIGKILL)


def test_run_starts_the_local_grid_once_and_server_commands_manage_it(tmp_path: Path) -> None:
    home, user_home, project = tmp_path / "home", tmp_path / "userhome", tmp_path / "project"
    user_home.mkdir()
    project.mkdir()
    (project / "hello.py").write_text("print('hello from the local grid')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RGRID_")}
    env.update(RGRID_HOME=str(home), HOME=str(user_home))
    cli = Cli(cwd=project, env=env)
    try:
        first = cli("run", "hello.py")

        assert first.returncode == 0, first.stderr
        assert first.stdout == "hello from the local grid\n"
        started = [line for line in first.stderr.splitlines() if "started the local grid" in line]
        assert len(started) == 1, first.stderr
        assert "127.0.0.1" in started[0]
        assert stat_mode(home / "admin.key") == 0o600

        second = cli("run", "hello.py")

        assert second.returncode == 0, second.stderr
        assert second.stdout == "hello from the local grid\n"
        assert "started the local grid" not in second.stderr

        running = cli("server", "status")
        assert running.returncode == 0, running.stderr
        assert "running" in running.stdout and "not running" not in running.stdout
        listed = cli("list", "--json")
        assert json.loads(listed.stdout)["count"] == 2

        stopped = cli("server", "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert "stopped" in stopped.stderr

        after = cli("server", "status")
        assert after.returncode != 0
        assert "not running" in after.stdout
    finally:
        cli("server", "stop")
        _kill_daemon(home)


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777
