"""Acceptance: status, list, logs, outputs and cancel, human and --json (issue 2, item 7)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

from tests.acceptance.conftest import (
    assert_no_process_with,
    json_of,
    run_id,
    status_of,
    unique_marker,
    wait_for,
)
from tests.conftest import Cli

from rgrid import digests

#: alternating streams, paced so the order the grid records is the order they were written
CHATTY = """\
import sys, time
for i in range(3):
    print(f"out {i}", flush=True)
    time.sleep(0.05)
    print(f"err {i}", file=sys.stderr, flush=True)
    time.sleep(0.05)
with open("result.txt", "w") as f:
    f.write("result\\n")
"""

CHATTY_LOG = ["out| out 0", "err| err 0", "out| out 1", "err| err 1", "out| out 2", "err| err 2"]

SLEEPER = """\
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", sys.argv[1]])
print("sleeping", flush=True)
time.sleep(60)
"""


def _three_executions(cli: Cli, workdir: Path) -> tuple[str, str, str]:
    """(succeeded with project=x, failed with project=y, succeeded unlabelled), oldest first."""
    (workdir / "ok.py").write_text("print('ok')\n")
    (workdir / "bad.py").write_text("import sys\nsys.exit(2)\n")
    ids = []
    for script, labels in (
        ("ok.py", ["--metadata", "project=x", "--metadata", "team=a"]),
        ("bad.py", ["--metadata", "project=y"]),
        ("ok.py", []),
    ):
        result = cli("run", *labels, script)
        ids.append(run_id(result))
    return ids[0], ids[1], ids[2]


def test_status_human_and_json(account_cli: Cli, workdir: Path) -> None:
    (workdir / "fail.py").write_text("raise ValueError('bad row 7')\n")
    result = account_cli("run", "--metadata", "project=x", "--timeout", "90s", "fail.py")
    assert result.returncode == 1
    execution_id = run_id(result)

    human = account_cli("status", execution_id)
    assert human.returncode == 0, human.stderr
    fields = {line[:10].strip(): line[10:].strip() for line in human.stdout.splitlines() if line}
    assert fields["id"] == execution_id
    assert fields["state"] == "failed (script_error)"
    assert fields["exit code"] == "1"
    assert fields["cause"] == "ValueError: bad row 7"
    assert fields["metadata"] == "project=x"
    assert "timeout 1m30s" in fields["limits"]
    # `rgrid status ID` takes the quick path (no click); `--` sends it through click's parser:
    # the same lines either way, human and --json
    assert account_cli("status", "--", execution_id).stdout == human.stdout
    assert (
        account_cli("status", "--json", "--", execution_id).stdout
        == account_cli("status", execution_id, "--json").stdout
    )

    data = status_of(account_cli, execution_id)
    assert data["id"] == execution_id
    assert (data["state"], data["exit_code"], data["failure_class"]) == (
        "failed",
        1,
        "script_error",
    )
    assert data["cause"] == "ValueError: bad row 7"
    assert data["metadata"] == {"project": "x"}
    assert data["timeout_s"] == 90
    assert data["script"] == "fail.py" and data["args"] == []
    created, queued, started, finished = (
        datetime.fromisoformat(data[f"{stamp}_at"])
        for stamp in ("created", "queued", "started", "finished")
    )
    assert created <= queued <= started <= finished
    assert data["duration_s"] >= 0 and data["worker"] and data["attempt"] == 1

    # a unique prefix names the same execution
    assert status_of(account_cli, execution_id[:10])["id"] == execution_id


def test_status_and_list_show_arguments_as_a_shell_takes_them(
    account_cli: Cli, workdir: Path
) -> None:
    """``"two words"`` was one argument: shown joined with spaces it read as two."""
    (workdir / "echo.py").write_text("import sys\nprint(sys.argv[1:])\n")
    execution_id = run_id(account_cli("run", "echo.py", "two words", "it's"))
    fields = {
        line[:10].strip(): line[10:].strip()
        for line in account_cli("status", execution_id).stdout.splitlines()
        if line
    }
    assert fields["script"] == "echo.py 'two words' 'it'\"'\"'s'"
    listed = account_cli("list", "--limit", "1").stdout.splitlines()[1]
    assert listed.startswith(execution_id) and listed.endswith("echo.py 'two words' 'it'\"'\"'s'")


def test_list_filters_and_limits(account_cli: Cli, workdir: Path) -> None:
    labelled, failed, plain = _three_executions(account_cli, workdir)

    everything = json_of(account_cli("list", "--json"))
    assert [e["id"] for e in everything["data"]] == [plain, failed, labelled]  # newest first
    assert everything["count"] == 3

    succeeded = json_of(account_cli("list", "--status", "succeeded", "--json"))
    assert [e["id"] for e in succeeded["data"]] == [plain, labelled]
    assert {e["state"] for e in succeeded["data"]} == {"succeeded"}

    failed_only = json_of(account_cli("list", "--status", "failed", "--json"))
    assert [e["id"] for e in failed_only["data"]] == [failed]

    by_label = json_of(account_cli("list", "--metadata", "project=x", "--json"))
    assert [e["id"] for e in by_label["data"]] == [labelled]
    both = json_of(account_cli("list", "--metadata", "project=x", "--metadata", "team=a", "--json"))
    assert [e["id"] for e in both["data"]] == [labelled]
    none = json_of(account_cli("list", "--metadata", "project=z", "--json"))
    assert none["data"] == [] and none["count"] == 0

    newest = json_of(account_cli("list", "--limit", "1", "--json"))
    assert [e["id"] for e in newest["data"]] == [plain]

    human = account_cli("list")
    assert human.returncode == 0, human.stderr
    header, *rows = human.stdout.splitlines()
    assert header.split()[:2] == ["ID", "STATE"]
    assert [row.split()[0] for row in rows] == [plain, failed, labelled]
    assert "failed (script_error)" in rows[1] and "bad.py" in rows[1]

    limited = account_cli(
        "list", "--limit", "1", "--status", "succeeded", "--metadata", "project=x"
    )
    assert [row.split()[0] for row in limited.stdout.splitlines()[1:]] == [labelled]


def test_logs_history_in_order_with_filters(account_cli: Cli, workdir: Path) -> None:
    (workdir / "chatty.py").write_text(CHATTY)
    result = account_cli("run", "chatty.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "out 0\nout 1\nout 2\n"
    execution_id = run_id(result)

    full = account_cli("logs", execution_id)
    assert full.returncode == 0, full.stderr
    assert full.stdout.splitlines() == CHATTY_LOG

    stdout_only = account_cli("logs", execution_id, "--stdout-only")
    assert stdout_only.stdout.splitlines() == ["out| out 0", "out| out 1", "out| out 2"]
    stderr_only = account_cli("logs", execution_id, "--stderr-only")
    assert stderr_only.stdout.splitlines() == ["err| err 0", "err| err 1", "err| err 2"]
    tail = account_cli("logs", execution_id, "--tail", "2")
    assert tail.stdout.splitlines() == ["out| out 2", "err| err 2"]
    tail_err = account_cli("logs", execution_id, "--tail", "2", "--stderr-only")
    assert tail_err.stdout.splitlines() == ["err| err 1", "err| err 2"]

    lines = json_of(account_cli("logs", execution_id, "--json"))
    assert [(line["stream"], line["text"]) for line in lines] == [
        ("stdout", "out 0\n"),
        ("stderr", "err 0\n"),
        ("stdout", "out 1\n"),
        ("stderr", "err 1\n"),
        ("stdout", "out 2\n"),
        ("stderr", "err 2\n"),
    ]
    seqs = [line["seq"] for line in lines]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert all(line["attempt"] == 1 and line["ts"] for line in lines)

    # a unique prefix works here too
    assert account_cli("logs", execution_id[:10]).stdout == full.stdout

    both = account_cli("logs", execution_id, "--stdout-only", "--stderr-only")
    assert both.returncode != 0 and "exclude" in both.stderr


def test_outputs_human_and_json(account_cli: Cli, workdir: Path) -> None:
    (workdir / "chatty.py").write_text(CHATTY)
    result = account_cli("run", "--remote-only", "chatty.py")
    execution_id = run_id(result)

    listed = json_of(account_cli("outputs", execution_id, "--json"))
    assert [(o["path"], o["size"], o["digest"]) for o in listed] == [
        ("result.txt", 7, digests.of_bytes(b"result\n"))
    ]
    human = account_cli("outputs", execution_id[:10])
    assert human.returncode == 0, human.stderr
    rows = human.stdout.splitlines()
    assert rows[0].split() == ["SIZE", "DIGEST", "EXPIRES", "PATH"]
    expires = datetime.fromisoformat(listed[0]["expires_at"])
    created = datetime.fromisoformat(listed[0]["created_at"])
    assert expires - created == timedelta(days=30)  # the default retention
    shown = expires.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    assert re.fullmatch(
        r"\s*7 B\s+" + listed[0]["digest"][:19] + rf"\s+{shown}\s+result\.txt", rows[1]
    )

    (workdir / "nothing.py").write_text("print('no files')\n")
    empty_id = run_id(account_cli("run", "nothing.py"))
    assert json_of(account_cli("outputs", empty_id, "--json")) == []
    empty = account_cli("outputs", empty_id)
    assert empty.returncode == 0 and empty.stdout == ""
    assert "no outputs" in empty.stderr


def test_cancel_a_running_execution_and_refuse_a_finished_one(
    account_cli: Cli, workdir: Path
) -> None:
    marker = unique_marker("cancel")
    (workdir / "sleeper.py").write_text(SLEEPER)
    submitted = account_cli("run", "--detach", "sleeper.py", marker)
    assert submitted.returncode == 0, submitted.stderr
    execution_id = submitted.stdout.strip()
    try:
        wait_for(lambda: "out| sleeping" in account_cli("logs", execution_id).stdout)
        assert status_of(account_cli, execution_id)["state"] == "running"

        cancelled = account_cli("cancel", execution_id[:10])

        assert cancelled.returncode == 0, cancelled.stderr
        assert execution_id in cancelled.stderr
        final = wait_for(
            lambda: (s := status_of(account_cli, execution_id))["state"] == "cancelled" and s,
            timeout=8,
        )
        assert final["finished_at"]
        assert_no_process_with(marker)
    finally:
        account_cli("cancel", execution_id)

    again = account_cli("cancel", execution_id)
    assert again.returncode == 1
    assert again.stderr.startswith("error: ") and "already cancelled" in again.stderr

    (workdir / "quick.py").write_text("print('quick')\n")
    done = run_id(account_cli("run", "quick.py"))
    refused = account_cli("cancel", done, "--json")
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: ") and "already succeeded" in refused.stderr
    assert status_of(account_cli, done)["state"] == "succeeded"

    waited = account_cli("wait", execution_id)
    assert waited.returncode == 130
    assert waited.stdout == "sleeping\n"
