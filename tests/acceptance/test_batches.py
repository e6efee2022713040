"""Acceptance: batches — one script over many inputs, in parallel, surviving a killed CLI (issue 6).

Every test drives the installed ``rgrid`` binary against a real grid server (no mocks)."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import random
import re
import signal
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.acceptance.conftest import (
    assert_no_process_with,
    json_of,
    new_account,
    processes_with,
    run_on_a_terminal,
    unique_marker,
    wait_for,
)
from tests.conftest import RGRID_BIN, Cli, CliResult, LiveServer

from rgrid import digests
from rgrid.services.batches import CHANGES_LAG

BATCH_LINE = re.compile(r"^rgrid: (batch_[A-Za-z0-9]+): (\d+) items")
STATE_LINE = re.compile(
    r"^(queued|running|retrying|succeeded|failed|cancelled) +(\S+) +(exec_\w+)"
    r"(?:  \((\w+)\))?$"
)
TERMINAL = {"succeeded", "failed", "cancelled"}
BIG = 8 * 1024 * 1024  # big enough that a download takes a while

#: reads ``--threshold T FILE``; a file holding BAD makes it exit 1 with a ValueError
PROCESS = """\
import sys
import time
from pathlib import Path

args = sys.argv[1:]
threshold = float(args[args.index("--threshold") + 1])
path = Path(args[-1])
time.sleep(float(args[args.index("--sleep") + 1]) if "--sleep" in args else 0)
text = path.read_text()
if "BAD" in text:
    raise ValueError(f"malformed row in {path.name}")
kept = [float(x) for x in text.split() if float(x) > threshold]
Path("result.txt").write_text(f"{path.as_posix()} {len(kept)} {sum(kept):.3f}\\n")
Path("stats").mkdir(exist_ok=True)
Path("stats", path.stem + ".bin").write_bytes(path.read_bytes()[::-1] * 3)
if "--big" in args:
    import random

    size = int(args[args.index("--big") + 1])
    Path("big.bin").write_bytes(random.Random(path.name).randbytes(size))
"""


def expected_result(rel: str, text: str, threshold: float = 0.5) -> bytes:
    kept = [float(x) for x in text.split() if float(x) > threshold]
    return f"{rel} {len(kept)} {sum(kept):.3f}\n".encode()


def expected_stats(content: bytes) -> bytes:
    return content[::-1] * 3


def expected_big(name: str, size: int) -> bytes:
    return random.Random(name).randbytes(size)


def csv_text(index: int) -> str:
    return "".join(f"{((index * 7 + k * 13) % 100) / 100:.2f}\n" for k in range(12))


def batch_id_of(stderr: str) -> str:
    first = stderr.splitlines()[0] if stderr else ""
    match = BATCH_LINE.match(first)
    assert match, f"no batch line first on stderr: {stderr!r}"
    return match.group(1)


def batch_status(cli: Cli, batch_id: str) -> dict[str, Any]:
    data = json_of(cli("status", batch_id, "--json"))
    assert isinstance(data, dict)
    return data


def wait_until_done(cli: Cli, batch_id: str, timeout: float) -> dict[str, Any]:
    return wait_for(
        lambda: (s := batch_status(cli, batch_id))["batch"]["done"] and s,
        timeout=timeout,
        interval=0.2,
    )


def batch_executions(cli: Cli, batch_id: str) -> list[dict[str, Any]]:
    page = json_of(cli("list", "--batch", batch_id, "--json", "--limit", "1000"))
    return list(page["data"])


def files_under(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def stray_files(root: Path) -> list[str]:
    """Temp or partial files a download could leave behind."""
    return [
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.name.startswith(".") or p.name.endswith((".part", ".tmp")) or "rgrid" in p.name
    ]


def ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def max_overlap(executions: list[dict[str, Any]]) -> tuple[int, list[str]]:
    """The most executions running at one instant, from their recorded start and finish;
    and, for a failure message, the intervals that were running at that instant."""
    events = []
    for e in executions:
        assert e["started_at"] and e["finished_at"], e
        events += [(ts(e["started_at"]), 1, e), (ts(e["finished_at"]), -1, e)]
    running: list[dict[str, Any]] = []
    peak: list[dict[str, Any]] = []
    for _, delta, e in sorted(events, key=lambda ev: (ev[0], ev[1])):  # finishes first
        if delta > 0:
            running.append(e)
        else:
            running.remove(e)
        if len(running) > len(peak):
            peak = list(running)
    return len(peak), [f"{e['id']} {e['started_at']} .. {e['finished_at']}" for e in peak]


def error_first(result: CliResult) -> None:
    assert result.returncode != 0, result
    assert result.stderr.startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------------------------------------
# One 20-input batch with 3 bad inputs at --parallel 2, run once, examined by several tests.


@dataclasses.dataclass
class TwentyRun:
    cli: Cli
    root: Path
    result: CliResult
    seconds: float
    batch_id: str
    inputs: dict[str, str]  # relative input path -> its text
    bad: list[str]
    executions: list[dict[str, Any]]  # `rgrid list --batch` right after the run


@pytest.fixture(scope="module")
def twenty(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> TwentyRun:
    root = tmp_path_factory.mktemp("twenty")
    admin = Cli(cwd=root, env=live_server.cli_env())
    _, key = new_account(admin)
    cli = Cli(cwd=root, env=live_server.cli_env(key))
    (root / "process.py").write_text(PROCESS)
    inputs: dict[str, str] = {}
    for i in range(20):
        rel = f"data/in{i:02d}.csv" if i < 10 else f"data/more/m{i:02d}.csv"
        inputs[rel] = csv_text(i)
    bad = ["data/in03.csv", "data/in08.csv", "data/more/m15.csv"]
    for rel in bad:
        inputs[rel] = csv_text(0) + "BAD\n"
    for rel, text in inputs.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)

    started = time.monotonic()
    result = cli(
        "run",
        "--batch",
        "data/**/*.csv",
        "--parallel",
        "2",
        "process.py",
        "--threshold",
        "0.5",
        "--sleep",
        "0.3",
        timeout=110,
    )
    seconds = time.monotonic() - started
    batch_id = batch_id_of(result.stderr)
    return TwentyRun(
        cli, root, result, seconds, batch_id, inputs, bad, batch_executions(cli, batch_id)
    )


def test_twenty_inputs_three_failing_outputs_in_place_failures_listed_exit_3(
    twenty: TwentyRun,
) -> None:
    result = twenty.result
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    outputs = twenty.root / "outputs"
    expected = {}
    for rel, text in twenty.inputs.items():
        if rel in twenty.bad:
            continue
        stem = Path(rel).stem
        expected[f"{stem}/result.txt"] = expected_result(rel, text)
        expected[f"{stem}/stats/{stem}.bin"] = expected_stats(text.encode())
    assert len(expected) == 34
    assert files_under(outputs) == expected  # 17 items' outputs, nothing for the 3 failures

    summary = result.stderr.splitlines()
    assert any(
        re.match(rf"^rgrid: {twenty.batch_id}: 17 succeeded, 3 failed\b", line) for line in summary
    ), result.stderr
    failure_lines = [line for line in summary if line.startswith("rgrid:   failed ")]
    assert len(failure_lines) == 3, result.stderr
    for rel in twenty.bad:
        (line,) = [f for f in failure_lines if f" {rel}:" in f]
        assert "script_error" in line
        assert f"ValueError: malformed row in {Path(rel).name}" in line
    assert stray_files(twenty.root / "outputs") == []


def test_parallel_2_is_never_exceeded_by_the_grid(twenty: TwentyRun) -> None:
    executions = twenty.executions
    assert len(executions) == 20
    assert {e["batch_id"] for e in executions} == {twenty.batch_id}
    peak, during = max_overlap(executions)
    assert peak == 2, f"{peak} ran at once with --parallel 2: {during}"
    # 20 items of >= 0.3 s two at a time cannot take less than 10 x 0.3 s
    assert twenty.seconds >= 3.0


def test_non_tty_progress_is_one_parseable_line_per_state_change(twenty: TwentyRun) -> None:
    lines = twenty.result.stdout.splitlines()
    assert lines, "no progress lines on stdout"
    by_id: dict[str, list[str]] = {}
    inputs_of: dict[str, str] = {}
    for line in lines:
        match = STATE_LINE.match(line)
        assert match, f"unparseable progress line {line!r}"
        state, rel, execution_id, failure = match.groups()
        assert "\r" not in line and "\x1b" not in line
        by_id.setdefault(execution_id, []).append(state)
        inputs_of[execution_id] = rel
        assert (failure == "script_error") == (state == "failed"), line
    assert sorted(inputs_of.values()) == sorted(twenty.inputs)
    assert "\r" not in twenty.result.stderr and "\x1b" not in twenty.result.stderr
    for execution_id, states in by_id.items():
        assert len(states) == len(set(states)), f"a state reported twice: {states}"
        assert states[-1] in TERMINAL and all(s not in TERMINAL for s in states[:-1]), states
        expected = "failed" if inputs_of[execution_id] in twenty.bad else "succeeded"
        assert states[-1] == expected


def test_retry_failed_only_after_fixing_inputs_reruns_exactly_three(twenty: TwentyRun) -> None:
    cli, root = twenty.cli, twenty.root
    for rel in twenty.bad:
        twenty.inputs[rel] = csv_text(int(Path(rel).stem[-2:]))
        (root / rel).write_text(twenty.inputs[rel])
    before = {e["id"]: e for e in batch_executions(cli, twenty.batch_id)}
    untouched = {p: p.stat().st_mtime_ns for p in (root / "outputs").rglob("*") if p.is_file()}

    result = cli("retry", "--batch", twenty.batch_id, "--failed-only", timeout=60)

    assert result.returncode == 0, result.stderr
    assert f"{twenty.batch_id}: 3 item(s) queued again" in result.stderr
    after = batch_executions(cli, twenty.batch_id)
    new = [e for e in after if e["id"] not in before]
    assert len(new) == 3 and len(after) == 23  # the list keeps the superseded originals
    failed_ids = {i for i, e in before.items() if e["state"] == "failed"}
    assert {e["retry_of"] for e in new} == failed_ids
    assert {e["batch_input"] for e in new} == set(twenty.bad)
    assert all(e["state"] == "succeeded" for e in new)
    status = batch_status(cli, twenty.batch_id)
    assert status["batch"]["done"] and status["batch"]["total"] == 20
    assert status["batch"]["counts"] == {"succeeded": 20}
    current = {item["input"]: item for item in status["data"]}
    assert len(current) == 20
    for e in new:
        assert current[e["batch_input"]]["id"] == e["id"]
    for rel in twenty.bad:
        stem = Path(rel).stem
        folder = root / "outputs" / stem
        assert (folder / "result.txt").read_bytes() == expected_result(rel, twenty.inputs[rel])
        assert (folder / "stats" / f"{stem}.bin").read_bytes() == expected_stats(
            twenty.inputs[rel].encode()
        )
    for path, mtime in untouched.items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was downloaded again"
    assert len(files_under(root / "outputs")) == 40
    assert stray_files(root / "outputs") == []


# ---------------------------------------------------------------------------------------------


def test_killed_cli_batch_completes_and_wait_downloads_exactly_the_missing(
    account_cli: Cli, workdir: Path
) -> None:
    (workdir / "process.py").write_text(PROCESS)
    inputs = {f"in/k{i}.csv": csv_text(i) for i in range(8)}
    for rel, text in inputs.items():
        (workdir / rel).parent.mkdir(exist_ok=True)
        (workdir / rel).write_text(text)
    outputs = workdir / "outputs"
    process = subprocess.Popen(
        [
            str(RGRID_BIN),
            *("run", "--batch", "in/*.csv", "--parallel", "2"),
            *("process.py", "--threshold", "0.5", "--sleep", "0.3", "--big", str(BIG)),
        ],
        cwd=workdir,
        env=account_cli.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stderr is not None
        batch_id = batch_id_of(process.stderr.readline())
        # once some outputs are in place, kill it: in the middle of a download if one is
        # caught in time, else before half the items are downloaded
        wait_for(lambda: list(outputs.glob("*/result.txt")), timeout=30, interval=0.02)
        deadline = time.monotonic() + 20
        while len(list(outputs.glob("*/result.txt"))) < 4 and not any(outputs.rglob("*.part")):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.001)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
    assert process.returncode == -signal.SIGKILL
    before = {
        p.relative_to(outputs).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in outputs.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }
    assert before, "nothing was downloaded before the kill"
    status = batch_status(account_cli, batch_id)
    assert not status["batch"]["done"], "the batch ended before the CLI was killed"

    final = wait_until_done(account_cli, batch_id, timeout=40)
    assert final["batch"]["counts"] == {"succeeded": 8}

    result = account_cli("wait", batch_id, timeout=60)

    assert result.returncode == 0, result.stderr
    expected = {}
    for rel, text in inputs.items():
        stem = Path(rel).stem
        expected[f"{stem}/result.txt"] = expected_result(rel, text)
        expected[f"{stem}/stats/{stem}.bin"] = expected_stats(text.encode())
        expected[f"{stem}/big.bin"] = expected_big(Path(rel).name, BIG)
    assert stray_files(outputs) == []
    assert files_under(outputs) == expected
    for rel, (inode, mtime) in before.items():
        now = (outputs / rel).stat()
        assert (now.st_ino, now.st_mtime_ns) == (inode, mtime), f"{rel} was downloaded twice"
    assert len(before) < len(expected)


def test_colliding_stems_get_their_relative_path_and_flat_names(
    account_cli: Cli, workdir: Path
) -> None:
    (workdir / "process.py").write_text(PROCESS)
    inputs = {"a/x.csv": csv_text(1), "b/x.csv": csv_text(2), "c/y.csv": csv_text(3)}
    for rel, text in inputs.items():
        (workdir / rel).parent.mkdir(exist_ok=True)
        (workdir / rel).write_text(text)

    nested = account_cli(
        "run", "--batch", "*/*.csv", "--output-dir", "res", "process.py", "--threshold", "0.5"
    )

    assert nested.returncode == 0, nested.stderr
    assert files_under(workdir / "res") == {
        "a/x/result.txt": expected_result("a/x.csv", inputs["a/x.csv"]),
        "a/x/stats/x.bin": expected_stats(inputs["a/x.csv"].encode()),
        "b/x/result.txt": expected_result("b/x.csv", inputs["b/x.csv"]),
        "b/x/stats/x.bin": expected_stats(inputs["b/x.csv"].encode()),
        "y/result.txt": expected_result("c/y.csv", inputs["c/y.csv"]),
        "y/stats/y.bin": expected_stats(inputs["c/y.csv"].encode()),
    }
    assert not (workdir / "outputs").exists()

    # --flat without --output-dir: everything straight into the current directory
    flat_dir = workdir / "flat-here"
    for rel in ("process.py", "a/x.csv", "c/y.csv"):
        (flat_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (flat_dir / rel).write_bytes((workdir / rel).read_bytes())
    flat = Cli(cwd=flat_dir, env=account_cli.env)(
        "run",
        "--batch",
        "a/*.csv",
        "--batch",
        "c/*.csv",
        "--flat",
        "process.py",
        "--threshold",
        "0.5",
    )

    assert flat.returncode == 0, flat.stderr
    produced = files_under(flat_dir)
    for rel in ("process.py", "a/x.csv", "c/y.csv"):
        assert produced.pop(rel) == (workdir / rel).read_bytes()
    # result.txt is produced by both executions: <stem>__result.txt; stats/x.bin and
    # stats/y.bin by one each: they keep their names
    assert produced == {
        "x__result.txt": expected_result("a/x.csv", inputs["a/x.csv"]),
        "y__result.txt": expected_result("c/y.csv", inputs["c/y.csv"]),
        "stats/x.bin": expected_stats(inputs["a/x.csv"].encode()),
        "stats/y.bin": expected_stats(inputs["c/y.csv"].encode()),
    }
    assert stray_files(flat_dir) == []
    assert not (flat_dir / "outputs").exists()


def test_json_progress_lines_are_valid_json_with_a_right_summary(
    account_cli: Cli, workdir: Path
) -> None:
    (workdir / "process.py").write_text(PROCESS)
    inputs = {f"j{i}.csv": csv_text(i) for i in range(4)}
    inputs["j2.csv"] = "BAD\n"
    for rel, text in inputs.items():
        (workdir / rel).write_text(text)

    result = account_cli("run", "--batch", "j*.csv", "--json", "process.py", "--threshold", "0.5")

    assert result.returncode == 3, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events and all(isinstance(e, dict) for e in events)
    *items, summary = events
    assert all(e["event"] == "item" for e in items)
    batch_id = batch_id_of(result.stderr)
    assert {e["batch"] for e in items} == {batch_id}
    assert {e["input"] for e in items} == set(inputs)
    last = {e["input"]: e for e in items}
    assert {k: v["state"] for k, v in last.items()} == {
        "j0.csv": "succeeded",
        "j1.csv": "succeeded",
        "j2.csv": "failed",
        "j3.csv": "succeeded",
    }
    assert last["j2.csv"]["exit_code"] == 1
    assert last["j2.csv"]["failure_class"] == "script_error"
    assert summary["event"] == "summary"
    assert summary["batch"] == batch_id
    assert (summary["total"], summary["succeeded"], summary["failed"]) == (4, 3, 1)
    assert summary["exit_code"] == 3
    (failure,) = summary["failures"]
    assert failure["input"] == "j2.csv" and failure["failure_class"] == "script_error"
    assert "ValueError: malformed row in j2.csv" in failure["cause"]


def test_tty_progress_is_a_live_bar_with_failures_above_it(account_cli: Cli, workdir: Path) -> None:
    """stderr on a terminal (a pty): a bar redrawn in place with done / failed / running /
    queued of N, elapsed and an ETA; a failed item is printed above it as it happens."""
    (workdir / "process.py").write_text(PROCESS)
    for i in range(6):
        (workdir / f"t{i}.csv").write_text("BAD\n" if i == 1 else csv_text(i))
    command = ["run", "--batch", "t*.csv", "process.py", "--threshold", "0.5", "--sleep", "0.3"]
    returncode, stdout, text = run_on_a_terminal(account_cli, *command, "--parallel", "2")
    assert returncode == 3, text
    assert stdout == b""  # the bar is on stderr; stdout stays the script's
    bars = [part for part in re.split(r"[\r\n]", text) if "done," in part]
    assert len(bars) >= 3, text  # redrawn as it goes
    final = re.compile(
        r"\[#{24}\] 6/6 done, 1 failed, 0 running, 0 queued, \S+ elapsed(, ETA \S+)?, "
        r"€0\.\d{6} so far\x1b\[K$"
    )
    assert final.search(bars[-1]), bars[-1]
    assert any(re.search(r"\d/6 done, \d failed, \d running, \d queued", b) for b in bars[:-1])
    assert any("ETA" in b for b in bars), text
    assert re.search(r"\r\x1b\[Kfailed t1.csv: script_error  \(exec_\w+\)\r?\n", text), text
    assert re.search(r"5 succeeded, 1 failed, 0 cached \(of 6\), cost (< )?€0\.\d{6}", text)
    assert all((workdir / "outputs" / f"t{i}" / "result.txt").is_file() for i in (0, 2, 3, 4, 5))


def test_items_changed_after_gives_only_what_changed(
    account_cli: Cli, workdir: Path, live_server: LiveServer
) -> None:
    """The API a follower polls: all items first, then only the changed ones; a time without
    a timezone or not a time is a clear 422."""
    (workdir / "process.py").write_text(PROCESS)
    for i in range(3):
        (workdir / f"c{i}.csv").write_text(csv_text(i))
    result = account_cli("run", "--batch", "c*.csv", "process.py", "--threshold", "0.5")
    assert result.returncode == 0, result.stderr
    url = f"{live_server.url}/api/v1/batches/{batch_id_of(result.stderr)}/items"
    headers = {"Authorization": f"Bearer {account_cli.env['RGRID_API_KEY']}"}

    everything = httpx.get(url, headers=headers).json()
    assert [i["input"] for i in everything["data"]] == ["c0.csv", "c1.csv", "c2.csv"]
    later = datetime.fromisoformat(everything["next_changed_after"]) + timedelta(seconds=10)
    nothing = httpx.get(url, params={"changed_after": later.isoformat()}, headers=headers)
    assert nothing.status_code == 200 and nothing.json()["data"] == []
    assert nothing.json()["batch"]["counts"] == {"succeeded": 3}
    for bad in ("2026-01-01T00:00:00", "yesterday"):
        response = httpx.get(url, params={"changed_after": bad}, headers=headers)
        assert response.status_code == 422, response.text


def test_a_follower_waiting_on_a_batch_is_answered_when_it_ends(
    account_cli: Cli, workdir: Path, live_server: LiveServer
) -> None:
    """``wait``: the answer comes when the batch ends (every item and its outputs in it), not
    up to a poll later; an unfinished batch's after the wait; a bad wait is a clear 422."""
    (workdir / "process.py").write_text(PROCESS)
    for i in range(2):
        (workdir / f"w{i}.csv").write_text(csv_text(i))
    result = account_cli(
        "run", "--batch", "w*.csv", "--detach", "process.py", "--threshold", "0.5", "--sleep", "2"
    )
    assert result.returncode == 0, result.stderr
    url = f"{live_server.url}/api/v1/batches/{batch_id_of(result.stderr)}/items"
    headers = {"Authorization": f"Bearer {account_cli.env['RGRID_API_KEY']}"}

    started = time.monotonic()
    early = httpx.get(url, params={"wait": "0.3"}, headers=headers, timeout=10)
    assert early.status_code == 200 and not early.json()["batch"]["done"]
    assert 0.3 <= time.monotonic() - started < 5

    for bad in ("-1", "30.5", "soon"):
        refused = httpx.get(url, params={"wait": bad}, headers=headers)
        assert refused.status_code == 422, refused.text
        assert "wait" in refused.text

    page = httpx.get(url, params={"wait": "30"}, headers=headers, timeout=60)
    answered = datetime.now().astimezone()
    assert page.status_code == 200, page.text
    body = page.json()
    assert body["batch"]["done"] and body["batch"]["counts"] == {"succeeded": 2}
    assert [(i["input"], i["state"]) for i in body["data"]] == [
        ("w0.csv", "succeeded"),
        ("w1.csv", "succeeded"),
    ]
    assert all("result.txt" in [o["path"] for o in i["outputs"]] for i in body["data"])
    last_end = max(datetime.fromisoformat(i["finished_at"]) for i in body["data"])
    # the end was told at once (a poll without wait would have come long before it)
    assert timedelta(0) <= answered - last_end < timedelta(seconds=2), (answered, last_end)


def test_small_outputs_come_inline_with_the_items_page_and_are_saved_from_it(
    account_cli: Cli, workdir: Path, live_server: LiveServer
) -> None:
    """``inline=N``: each output of up to N bytes comes with its bytes (base64), so the CLI
    saves it without a download request; a bigger one, and every one of a page asked without
    it, comes without. A bad N is a clear 422. (One damaged on the grid's disk: in
    test_hostile_names.)"""
    (workdir / "process.py").write_text(PROCESS)
    names = [f"{unique_marker('inline')}-{i}.csv" for i in range(2)]
    for i, name in enumerate(names):
        (workdir / name).write_text(csv_text(i))
    big = 70_000  # over the CLI's 64 KiB: downloaded as before
    result = account_cli(
        "run", "--batch", "rgrid-test-inline-*.csv", "process.py", "--threshold", "0.5",
        "--big", str(big),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    expected = {}
    for i, name in enumerate(names):
        stem = Path(name).stem
        expected[name] = {
            "result.txt": expected_result(name, csv_text(i)),
            f"stats/{stem}.bin": expected_stats(csv_text(i).encode()),
            "big.bin": expected_big(name, big),
        }
        # what the CLI saved, from the page or downloaded: the script's bytes
        assert files_under(workdir / "outputs" / stem) == expected[name]

    url = f"{live_server.url}/api/v1/batches/{batch_id_of(result.stderr)}/items"
    headers = {"Authorization": f"Bearer {account_cli.env['RGRID_API_KEY']}"}

    pages = []

    def contents(**params: str) -> dict[str, dict[str, str | None]]:
        page = httpx.get(url, params=params, headers=headers, timeout=30)
        assert page.status_code == 200, page.text
        pages.append(page.json())
        return {
            i["input"]: {o["path"]: o["content"] for o in i["outputs"]} for i in page.json()["data"]
        }

    for name, outputs in contents(inline="65536").items():
        inlined = {path: base64.b64decode(text) for path, text in outputs.items() if text}
        assert inlined == {p: b for p, b in expected[name].items() if p != "big.bin"}
        assert outputs["big.bin"] is None
    assert all(c is None for o in contents().values() for c in o.values())
    assert all(c is None for o in contents(inline="10").values() for c in o.values())
    # A page of changes brings again the items that ended in the few seconds before the last
    # page was asked for (its cursor reaches back so far, CHANGES_LAG): their outputs came
    # with that page, not again; those that ended after it come with theirs.
    ended = {i["input"]: datetime.fromisoformat(i["finished_at"]) for i in pages[0]["data"]}
    after = min(ended.values()) - CHANGES_LAG + timedelta(seconds=0.5)
    again = contents(inline="65536", changed_after=after.isoformat())
    assert set(again) == set(names)
    for name, outputs in again.items():
        new = ended[name] > after + CHANGES_LAG  # after the last page was asked for
        assert (outputs["result.txt"] is not None) is new, (name, ended, after)
    for bad in ("-1", "65537", "lots"):
        refused = httpx.get(url, params={"inline": bad}, headers=headers)
        assert refused.status_code == 422, refused.text
        assert "inline" in refused.text


# ---------------------------------------------------------------------------------------------


def _nothing_submitted(cli: Cli) -> None:
    page = json_of(cli("list", "--json", "--limit", "1000"))
    assert page["count"] == 0 and page["data"] == []


def _missing(live_server: LiveServer, key: str, hashes: list[str]) -> list[str]:
    response = httpx.post(
        f"{live_server.url}/api/v1/blobs/missing",
        json={"digests": hashes},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text
    return list(response.json()["missing"])


def test_bad_batch_input_is_a_clear_error_and_nothing_is_submitted(
    account_cli: Cli, workdir: Path, live_server: LiveServer
) -> None:
    script = "import sys\nprint(sys.argv)\n"
    (workdir / "s.py").write_text(script)
    (workdir / "dir.csv").mkdir()
    (workdir / "dir.csv" / "inside.txt").write_text("x")
    (workdir / "one.csv").write_text("1\n")

    no_match = account_cli("run", "--batch", "nothing/*.csv", "s.py")
    error_first(no_match)
    assert "nothing/*.csv" in no_match.stderr and "no files" in no_match.stderr

    for value in ("0", "-1"):
        bad_parallel = account_cli("run", "--batch", "one.csv", "--parallel", value, "s.py")
        assert bad_parallel.returncode == 2, bad_parallel
        assert "Invalid value for '--parallel'" in bad_parallel.stderr
        assert "Traceback" not in bad_parallel.stderr

    directory = account_cli("run", "--batch", "dir.*", "s.py")
    error_first(directory)
    assert "only directories" in directory.stderr

    many = workdir / "many"
    many.mkdir()
    hashes = []
    for i in range(10_001):
        content = f"{i}\n".encode()
        (many / f"f{i:05d}.csv").write_bytes(content)
        if i % 1000 == 0:
            hashes.append(digests.of_bytes(content))
    started = time.monotonic()
    too_many = account_cli("run", "--batch", "many/*.csv", "s.py")
    elapsed = time.monotonic() - started
    error_first(too_many)
    assert "10001" in too_many.stderr.replace(",", "") and "10000" in too_many.stderr.replace(
        ",", ""
    )
    assert elapsed < 10, f"refusing 10,001 files took {elapsed:.1f}s"

    _nothing_submitted(account_cli)
    key = account_cli.env["RGRID_API_KEY"]
    script_sha = digests.of_bytes(script.encode())
    assert sorted(_missing(live_server, key, [script_sha, *hashes])) == sorted(
        [script_sha, *hashes]
    )


def test_cancel_stops_queued_and_running_items(account_cli: Cli, workdir: Path) -> None:
    marker = unique_marker("batch-cancel")
    (workdir / "sleeper.py").write_text("import time\ntime.sleep(60)\n")
    for i in range(6):
        (workdir / f"s{i}.txt").write_text(f"{i}\n")

    detached = account_cli(
        "run", "--batch", "s*.txt", "--parallel", "2", "--detach", "sleeper.py", marker
    )

    assert detached.returncode == 0, detached.stderr
    batch_id = detached.stdout.strip()
    assert re.fullmatch(r"batch_\w+", batch_id), detached.stdout
    running = wait_for(
        lambda: (
            (s := batch_status(account_cli, batch_id))["batch"]["counts"].get("running") == 2 and s
        ),
        timeout=30,
        interval=0.1,
    )
    assert running["batch"]["counts"] == {"running": 2, "queued": 4}

    def items_alive() -> set[str]:
        return {w for _, cmd in processes_with(marker) for w in cmd.split() if w.endswith(".txt")}

    assert len(wait_for(items_alive, timeout=10)) <= 2
    wait_for(lambda: len(items_alive()) == 2, timeout=10)  # the 2 running scripts are alive

    started = time.monotonic()
    cancelled = account_cli("cancel", batch_id)
    assert cancelled.returncode == 0, cancelled.stderr
    final = wait_until_done(account_cli, batch_id, timeout=10)
    assert time.monotonic() - started < 10
    assert final["batch"]["counts"] == {"cancelled": 6}
    assert [item["state"] for item in final["data"]] == ["cancelled"] * 6
    assert_no_process_with(marker, grace=5)

    waited = account_cli("wait", batch_id, timeout=30)
    assert waited.returncode == 1, waited.stderr
    assert f"{batch_id}: 0 succeeded" in waited.stderr
    assert not (workdir / "outputs").exists() or files_under(workdir / "outputs") == {}
