"""Acceptance: with no grid configured, `rgrid run` starts the local grid daemon (issue 2)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

from tests.conftest import RGRID_BIN, Cli


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


def test_the_daemon_starts_detached_from_the_directory_and_shell_that_started_it(
    tmp_path: Path,
) -> None:
    """Issue 14, item 8: started from a directory that is then deleted, the daemon still builds
    new environments; its working directory is RGRID_HOME, its session its own, it holds no
    descriptor of its caller, and the caller's virtual environment and Python, uv or conda
    variables are not in its environment (what it needs is)."""
    home, user_home, first_dir, later_dir = (
        tmp_path / "home",
        tmp_path / "userhome",
        tmp_path / "gone",
        tmp_path / "project",
    )
    for directory in (user_home, first_dir, later_dir):
        directory.mkdir()
    (first_dir / "hello.py").write_text("print('hello')\n")
    (later_dir / "uses_six.py").write_text(
        "# /// script\n# dependencies = ['six']\n# ///\nimport six\nprint('six', six.__version__)\n"
    )
    leaky = {
        "VIRTUAL_ENV": str(tmp_path / "someones-venv"),
        "PYTHONPATH": str(tmp_path / "someones-path"),
        "UV_PROJECT_ENVIRONMENT": str(tmp_path / "someones-uv-env"),
        "UV_CACHE_DIR": str(tmp_path / "someones-uv-cache"),
        "CONDA_PREFIX": str(tmp_path / "someones-conda"),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("RGRID_")}
    env.update(RGRID_HOME=str(home), HOME=str(user_home), TZ="Europe/Paris", **leaky)
    caller_file = tmp_path / "held-by-the-caller"
    try:
        with caller_file.open("w") as held:  # a descriptor the CLI inherits, the daemon must not
            first = subprocess.run(
                [str(RGRID_BIN), "run", "hello.py"],
                cwd=first_dir,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                pass_fds=(held.fileno(),),
            )
        assert first.returncode == 0, first.stderr
        pid = int(json.loads((home / "server.json").read_text())["pid"])
        shutil.rmtree(first_dir)

        assert Path(f"/proc/{pid}/cwd").resolve() == home.resolve()
        assert os.getsid(pid) == pid  # its own session: the terminal's hangup does not reach it
        assert str(caller_file) not in _open_files(pid)
        daemon_env = _environ_of(pid)
        assert sorted(set(leaky) & set(daemon_env)) == []
        assert daemon_env["RGRID_HOME"] == str(home)
        assert daemon_env["TZ"] == "Europe/Paris"
        assert daemon_env["PATH"] == env["PATH"]

        later = Cli(cwd=later_dir, env=env)("run", "uses_six.py", timeout=300)

        assert later.returncode == 0, later.stderr
        assert later.stdout.startswith("six 1."), later.stdout
        assert "six==" in later.stderr  # a new environment was built for it
    finally:
        Cli(cwd=tmp_path, env=env)("server", "stop")
        _kill_daemon(home)


def _environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {k.decode(): v.decode(errors="replace") for k, _, v in pairs}


def _open_files(pid: int) -> set[str]:
    names = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed meanwhile
            names.add(os.readlink(fd))
    return names
