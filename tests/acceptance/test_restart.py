"""Acceptance: killing the grid and starting it again keeps all history (issue 2, item 8)."""

from __future__ import annotations

from pathlib import Path

from tests.acceptance.conftest import json_of, run_id
from tests.conftest import Cli, make_server

SCRIPT = """\
import os, sys
print("line one")
print("a warning", file=sys.stderr, flush=True)
os.makedirs("out", exist_ok=True)
with open("out/data.bin", "wb") as f:
    f.write(bytes(range(256)) * 8)
print("line two")
sys.exit(7)
"""


def test_history_survives_a_killed_server(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    project = tmp_path / "project"
    project.mkdir()
    (project / "job.py").write_text(SCRIPT)
    server.start()
    try:
        cli = Cli(cwd=project, env=server.cli_env())
        result = cli("run", "--metadata", "kept=yes", "--remote-only", "job.py")
        assert result.returncode == 7, result.stderr
        execution_id = run_id(result)
        before = {
            "status": json_of(cli("status", execution_id, "--json")),
            "logs": json_of(cli("logs", execution_id, "--json")),
            "outputs": json_of(cli("outputs", execution_id, "--json")),
            "list": json_of(cli("list", "--json")),
        }
        human_logs = cli("logs", execution_id).stdout
        assert human_logs.splitlines()[0] == "out| line one"

        server.kill()  # SIGKILL: no clean shutdown
        server.start()  # same RGRID_HOME, same port

        cli = Cli(cwd=project, env=server.cli_env())
        assert json_of(cli("status", execution_id, "--json")) == before["status"]
        assert json_of(cli("logs", execution_id, "--json")) == before["logs"]
        assert json_of(cli("outputs", execution_id, "--json")) == before["outputs"]
        assert json_of(cli("list", "--json")) == before["list"]
        assert cli("logs", execution_id).stdout == human_logs
        assert before["status"]["state"] == "failed" and before["status"]["exit_code"] == 7

        fetched = cli("download", execution_id, "--output-dir", "after")
        assert fetched.returncode == 0, fetched.stderr
        assert (project / "after" / "out" / "data.bin").read_bytes() == bytes(range(256)) * 8

        # and the grid still runs new work
        again = cli("run", "job.py")
        assert again.returncode == 7 and again.stdout == "line one\nline two\n"
    finally:
        server.stop()
