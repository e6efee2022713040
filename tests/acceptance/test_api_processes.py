"""Acceptance: ``rgrid server run --api-processes N`` on PostgreSQL (issue 19, item 4): N
processes answer the API on one port while the main process runs the scripts, so every request
here goes through an API process. Each is found by its command line."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.acceptance.conftest import processes_with, run_id, status_of, wait_for
from tests.conftest import RGRID_BIN, Cli, LiveServer, fresh_postgres_database, make_server

from rgrid import settings

pytestmark = pytest.mark.postgres

API_PROCESS = "rgrid.api.processes"
HELLO = "import sys\nprint('hello', *sys.argv[1:])\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with fresh_postgres_database("rgrid_apiproc") as database:
        # a long lease: its renewal (every third of it) would find a cancel in 20 s; these
        # tests expect one at once
        grid = make_server(
            tmp_path_factory.mktemp("apiproc"),
            RGRID_DATABASE_URL=database,
            RGRID_API_PROCESSES="2",
            RGRID_LEASE_S="60",
        )
        grid.start()
        wait_for(lambda: len(api_processes(grid)) == 2, timeout=30)
        yield grid
        grid.stop()


def api_processes(server: LiveServer) -> list[int]:
    """The API processes of ``server`` (``… -m rgrid.api.processes MAIN_PID LEVEL``)."""
    assert server.process is not None
    return [
        pid for pid, command in processes_with(API_PROCESS) if f" {server.process.pid} " in command
    ]


class MainStopped:
    """The main process held with SIGSTOP: it runs nothing, the API processes still answer."""

    def __init__(self, server: LiveServer) -> None:
        assert server.process is not None
        self.pid = server.process.pid

    def __enter__(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def __exit__(self, *_exc: object) -> None:
        os.kill(self.pid, signal.SIGCONT)


@pytest.fixture
def cli(server: LiveServer, workdir: Path) -> Cli:
    return Cli(cwd=workdir, env=server.cli_env())


def get(server: LiveServer, path: str) -> httpx.Response:
    """One request on a connection of its own (a kept-alive one would stay with one process)."""
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    return httpx.get(f"{server.url}{path}", headers=headers, timeout=10)


def test_runs_through_the_server_of_several_processes(server: LiveServer, cli: Cli) -> None:
    (cli.cwd / "hello.py").write_text(HELLO)
    for n in range(6):  # each run's requests land on either process
        result = cli("run", "--no-cache", "hello.py", str(n))
        assert (result.returncode, result.stdout) == (0, f"hello {n}\n"), result.stderr


def test_an_api_process_answers_while_the_main_one_is_stopped(server: LiveServer, cli: Cli) -> None:
    (cli.cwd / "hello.py").write_text(HELLO)
    done = run_id(cli("run", "hello.py", "before"))
    with MainStopped(server):
        for _ in range(5):
            response = get(server, f"/api/v1/executions/{done}")
            assert (response.status_code, response.json()["state"]) == (200, "succeeded")
        listed = get(server, "/api/v1/executions?limit=5")
        assert listed.status_code == 200 and listed.json()["data"]
        # a submit taken by the API process: the dispatcher hears of it by the database
        queued = cli("run", "--detach", "hello.py", "while stopped", timeout=30)
        assert queued.returncode == 0, queued.stderr
        execution_id = queued.stdout.strip()
        assert status_of(cli, execution_id)["state"] == "queued"
    waited = cli("wait", execution_id, timeout=60)
    assert waited.returncode == 0, waited.stderr
    assert cli("logs", execution_id, "--raw").stdout == "hello while stopped\n"


def test_a_cancel_through_an_api_process_stops_the_script_at_once(
    server: LiveServer, cli: Cli
) -> None:
    (cli.cwd / "sleepy.py").write_text("import time\nprint('up', flush=True)\ntime.sleep(120)\n")
    execution_id = cli("run", "--detach", "sleepy.py").stdout.strip()
    wait_for(lambda: "up" in cli("logs", execution_id, "--raw").stdout, timeout=60)
    with MainStopped(server):
        cancelled = cli("cancel", execution_id, timeout=30)
        assert cancelled.returncode == 0, cancelled.stderr
    began = time.monotonic()
    wait_for(lambda: status_of(cli, execution_id)["state"] == "cancelled", timeout=10)
    # the lease renewal that would also find it comes 20 s after the last one
    assert time.monotonic() - began < 10


def test_live_logs_through_an_api_process_end_with_the_script(server: LiveServer, cli: Cli) -> None:
    """`rgrid run` follows the log through whichever process took its connection; the main
    process tells the API processes of each change, so the run ends with the script."""
    (cli.cwd / "ticks.py").write_text(
        "import time\nfor i in range(3):\n    print('tick', i, flush=True)\n    time.sleep(0.3)\n"
    )
    for _ in range(3):
        result = cli("run", "--no-cache", "ticks.py")
        assert result.returncode == 0, result.stderr
        assert result.stdout == "tick 0\ntick 1\ntick 2\n"


def test_metrics_count_the_whole_server(server: LiveServer, cli: Cli) -> None:
    (cli.cwd / "hello.py").write_text(HELLO)
    (cli.cwd / "data.bin").write_bytes(os.urandom(300_000))
    (cli.cwd / "reads.py").write_text("import sys\nprint(len(open(sys.argv[1], 'rb').read()))\n")
    time.sleep(1.5)  # each process's figures are at most a second old: the earlier tests' too
    before = _counter(server.metrics(), "rgrid_executions_started")
    for n in range(3):
        assert cli("run", "--no-cache", "hello.py", f"m{n}").returncode == 0
    assert cli("run", "--no-cache", "reads.py", "data.bin").stdout == "300000\n"
    time.sleep(1.5)  # each process's figures are at most a second old
    with MainStopped(server):  # the API process's answer counts the main one's executor
        text = get(server, "/metrics").text
    assert _counter(text, "rgrid_executions_started") == before + 4
    assert _counter(text, "rgrid_blob_bytes_received") >= 300_000
    answers = {_counter(server.metrics(), "rgrid_executions_started") for _ in range(6)}
    assert answers == {before + 4}


def _counter(text: str, name: str) -> float:
    match = re.search(rf"^{name}_total (\S+)$", text, re.MULTILINE)
    assert match, text
    return float(match.group(1))


def test_a_dead_api_process_is_started_again(server: LiveServer) -> None:
    first, second = api_processes(server)
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: first not in api_processes(server) and len(api_processes(server)) == 2)
    for _ in range(6):  # on fresh connections, whichever process each lands on
        assert get(server, "/health").status_code == 200
    assert second in api_processes(server)


def test_stopping_the_server_stops_its_api_processes(tmp_path: Path) -> None:
    with fresh_postgres_database("rgrid_apistop") as database:
        grid = make_server(tmp_path, RGRID_DATABASE_URL=database, RGRID_API_PROCESSES="3")
        grid.start()
        assert grid.process is not None
        children = wait_for(lambda: len(api_processes(grid)) == 3 and api_processes(grid))
        os.kill(grid.process.pid, signal.SIGTERM)  # the main process only, as systemd would
        # uvicorn shuts down gracefully, then ends by the signal it caught
        assert grid.process.wait(30) == -signal.SIGTERM
        assert "Application shutdown complete" in (grid.home / "server.log").read_text()
        wait_for(lambda: not any(_alive(p) for p in children), timeout=15)

        grid.start()  # killed outright, it cannot stop them: they notice and stop
        children = wait_for(lambda: len(api_processes(grid)) == 3 and api_processes(grid))
        os.kill(grid.process.pid, signal.SIGKILL)
        grid.process.wait(30)
        wait_for(lambda: not any(_alive(p) for p in children), timeout=15)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--api-processes", "0"], {}, "0 is not in the range 1<=x<=64"),
        (["--api-processes", "65"], {}, "65 is not in the range 1<=x<=64"),
        (["--api-processes", "two"], {}, "'two' is not a valid integer"),
        ([], {"RGRID_API_PROCESSES": "-3"}, "-3 is not in the range 1<=x<=64"),
        (["--api-processes", "2"], {}, "--api-processes above 1 needs PostgreSQL"),
    ],
)
def test_bad_api_process_counts_are_refused(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    """On SQLite (the default store) more than one process is refused, as is a count out of
    range; nothing starts and nothing is written."""
    home = tmp_path / "home"
    base = {k: v for k, v in os.environ.items() if not k.startswith("RGRID_")}
    done = subprocess.run(
        [str(RGRID_BIN), "server", "run", "--port", "1", *args],
        env={**base, "RGRID_HOME": str(home), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert not home.exists()


def test_the_cli_knows_the_settings_bound() -> None:
    from rgrid.cli import server as server_cli

    assert server_cli.MAX_API_PROCESSES == settings.MAX_API_PROCESSES


def test_a_taken_port_stops_the_server_at_once(tmp_path: Path) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        base = {k: v for k, v in os.environ.items() if not k.startswith("RGRID_")}
        done = subprocess.run(
            [str(RGRID_BIN), "server", "run", "--port", str(port), "--api-processes", "2"],
            env={
                **base,
                "RGRID_HOME": str(tmp_path / "home"),
                # never reached: the port is checked before the store is opened
                "RGRID_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Address already in use" in done.stderr
