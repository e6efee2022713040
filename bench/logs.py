"""bench/logs: how fast a printed line reaches a `rgrid logs --follow` client, and how many
lines per second a chatty script can print through rgrid.

Latency: a script prints 1,000 lines, each carrying time.time() at print, one every 5 ms; a
follower (`rgrid logs ID --follow --raw`) started before the first line records when each
arrives. Throughput: a script printing 200,000 lines as fast as it can, captured by rgrid,
against the bare interpreter writing into a pipe. Usage: .venv/bin/python bench/logs.py
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RGRID = Path(sys.executable).parent / "rgrid"
LATENCY_LINES = 1000
THROUGHPUT_LINES = 200_000

TICKER = f"""
import time
time.sleep(1.0)  # let the follower attach
for i in range({LATENCY_LINES}):
    print(f"{{i}} {{time.time():.6f}}")
    time.sleep(0.005)
"""
CHATTY = f"""
for i in range({THROUGHPUT_LINES}):
    print(i)
"""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def latency(project: Path, env: dict[str, str]) -> list[float]:
    (project / "ticker.py").write_text(TICKER)
    submitted = subprocess.run(
        [str(RGRID), "run", "--detach", "--no-cache", "ticker.py"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    execution_id = submitted.stdout.strip()
    follower = subprocess.Popen(
        [str(RGRID), "logs", execution_id, "--follow", "--raw"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        bufsize=1,
    )
    assert follower.stdout is not None
    delays = []
    for line in follower.stdout:
        received = time.time()
        _, _, stamp = line.strip().partition(" ")
        if stamp:
            delays.append(received - float(stamp))
    follower.wait()
    return delays


def duration_s(execution_id: str, project: Path, env: dict[str, str]) -> float:
    status = json.loads(
        subprocess.run(
            [str(RGRID), "status", execution_id, "--json"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    return float(status["duration_s"])


def throughput(project: Path, env: dict[str, str], python: str) -> tuple[float, float, float]:
    (project / "chatty.py").write_text(CHATTY)
    start = time.perf_counter()
    done = subprocess.run(
        [str(RGRID), "run", "--no-cache", "chatty.py"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    end_to_end = time.perf_counter() - start
    assert done.stdout.count("\n") == THROUGHPUT_LINES
    execution_id = done.stderr.split("exec_", 1)[1].split()[0]
    captured = duration_s("exec_" + execution_id, project, env)
    start = time.perf_counter()
    subprocess.run(
        [python, "chatty.py"],
        cwd=project,
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        check=True,
    )
    bare = time.perf_counter() - start
    return captured, end_to_end, bare


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="rgrid-bench-logs-"))
    project = tmp / "project"
    project.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RGRID_")}
    env.update(RGRID_HOME=str(tmp / "home"), HOME=str(tmp / "user"))
    python = getattr(sys, "_base_executable", sys.executable)
    try:
        subprocess.run([str(RGRID), "server", "start"], env=env, check=True, capture_output=True)
        delays = latency(project, env)
        captured, end_to_end, bare = throughput(project, env, python)
    finally:
        subprocess.run([str(RGRID), "server", "stop"], env=env, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    ms = [d * 1000 for d in delays]
    print(f"logs: {os.cpu_count()} cores")
    print(
        f"latency print → `logs --follow` over {len(ms)} lines: p50 {statistics.median(ms):.1f} ms, "
        f"p99 {percentile(ms, 0.99):.1f} ms, max {max(ms):.1f} ms (goal p50 <= 50, p99 <= 250)"
    )
    print(f"throughput, {THROUGHPUT_LINES} lines as fast as possible:")
    print(
        f"  bare python into a pipe           {bare:6.2f} s  {THROUGHPUT_LINES / bare:>10,.0f} lines/s"
    )
    print(
        f"  under rgrid, captured (duration)  {captured:6.2f} s  {THROUGHPUT_LINES / captured:>10,.0f} lines/s"
        f"  ratio {captured / bare:.2f}"
    )
    print(
        f"  `rgrid run` end to end, printed   {end_to_end:6.2f} s  {THROUGHPUT_LINES / end_to_end:>10,.0f} lines/s"
    )


if __name__ == "__main__":
    main()
