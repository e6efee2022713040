"""bench/startup: issue 19's start-up goals, each a ratio against its baseline in the same run.

Rows (median and p90 over N runs, runs of the commands interleaved so the machine's drift
weighs on all alike, a warm local grid daemon):
- ``python -c pass`` of the venv's interpreter (the one ``rgrid`` runs on): the baseline of
  ``rgrid --help`` and ``rgrid status ID`` (goal: each <= 4x);
- bare ``python hello.py`` of the real interpreter: the baseline of ``rgrid run --no-cache
  hello.py`` (goal: overhead <= 100 ms);
- ``rgrid run hello.py`` answered by the result cache (goal: <= 1.5x ``rgrid --help``).

Also where ``rgrid --help`` and ``rgrid status ID`` spend their imports (``-X importtime``,
the largest top-level modules). Usage: .venv/bin/python bench/startup.py [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import hello_project, median_ms, p90_ms, real_python, timed

BIN = Path(sys.executable).parent
RGRID = str(BIN / "rgrid")


def top_imports(argv: list[str], cwd: Path, env: dict[str, str], count: int = 6) -> str:
    """The largest top-level imports of a command, from ``-X importtime`` (cumulative µs)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    found = []
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| ( ?)(\S+)$", line)
        if match and not match.group(2):  # top level: not indented
            found.append((int(match.group(1)), match.group(3)))
    found.sort(reverse=True)
    return ", ".join(f"{name} {us / 1000:.1f}" for us, name in found[:count])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    tmp = Path(tempfile.mkdtemp(prefix="rgrid-bench-"))
    project, env = hello_project(tmp)
    python = real_python()
    commands = {
        "python -c pass (venv)": [sys.executable, "-c", "pass"],
        "python hello.py (real)": [python, "hello.py"],
        "rgrid --help": [RGRID, "--help"],
        "rgrid status ID": [RGRID, "status", "ID"],
        "rgrid run --no-cache hello.py": [RGRID, "run", "--no-cache", "hello.py"],
        "rgrid run hello.py (cache hit)": [RGRID, "run", "hello.py"],
    }
    samples: dict[str, list[float]] = {name: [] for name in commands}
    try:
        subprocess.run([RGRID, "server", "start"], env=env, check=True, capture_output=True)
        timed([RGRID, "run", "--no-cache", "hello.py"], 3, project, env)  # warm
        first = subprocess.run(
            [RGRID, "run", "--detach", "hello.py"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        execution = re.search(r"exec_\w+", first.stdout + first.stderr)
        assert execution is not None, first
        commands["rgrid status ID"][-1] = execution.group(0)
        subprocess.run(
            [RGRID, "wait", execution.group(0)], cwd=project, env=env, capture_output=True
        )
        for _ in range(runs):
            for name, argv in commands.items():
                samples[name] += timed(argv, 1, project, env)
        imports_help = top_imports([RGRID, "--help"], project, env)
        imports_status = top_imports(commands["rgrid status ID"], project, env)
    finally:
        subprocess.run([RGRID, "server", "stop"], env=env, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"startup: {runs} runs each, interleaved, warm local grid, {os.cpu_count()} cores")
    print(f"{'command':<34} {'median ms':>9} {'p90 ms':>9}")
    for name, values in samples.items():
        print(f"{name:<34} {median_ms(values):9.1f} {p90_ms(values):9.1f}")
    m = {name: median_ms(values) for name, values in samples.items()}
    passing = m["python -c pass (venv)"]
    print()
    print(f"rgrid --help / python -c pass:     {m['rgrid --help'] / passing:.1f}x (goal <= 4x)")
    print(f"rgrid status ID / python -c pass:  {m['rgrid status ID'] / passing:.1f}x (goal <= 4x)")
    overhead = m["rgrid run --no-cache hello.py"] - m["python hello.py (real)"]
    print(f"rgrid run overhead over python:    {overhead:.0f} ms (goal <= 100 ms)")
    hit = m["rgrid run hello.py (cache hit)"] / m["rgrid --help"]
    print(f"cache hit / rgrid --help:          {hit:.1f}x (goal <= 1.5x)")
    print(f"\nrgrid --help imports (ms): {imports_help}")
    print(f"rgrid status ID imports (ms): {imports_status}")


if __name__ == "__main__":
    main()
