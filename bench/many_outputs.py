"""bench/many_outputs: a run writing many small outputs, against the same script under bare python.

The script writes N files of a few bytes (default 1,001: one more than a log stream's last page
lists, so the CLI asks for the list too). Rows, each the median of R runs interleaved with its
baseline, against a warm local grid:
- ``python many.py`` of the real interpreter (the files written, nothing else);
- ``rgrid run --no-cache --remote-only many.py``: the run, its outputs collected and recorded;
- ``rgrid run --no-cache many.py``: the same, the outputs downloaded too;
and the execution's own duration (its outputs collected and recorded), from ``rgrid status``.

Usage: .venv/bin/python bench/many_outputs.py [--files 1001] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import hello_project, real_python

RGRID = str(Path(sys.executable).parent / "rgrid")
SCRIPT = """\
import os, sys
os.makedirs("many", exist_ok=True)
for i in range(int(sys.argv[1])):
    with open(f"many/{i:05}.txt", "w") as out:
        out.write(str(i))
"""


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    """Wall-clock seconds of one run (its ``many`` directory removed first), and its stderr."""
    shutil.rmtree(cwd / "many", ignore_errors=True)
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{argv} failed: {done.stderr[-500:]}")
    return elapsed, done.stderr


def _duration_s(stderr: str, cwd: Path, env: dict[str, str]) -> float:
    """The execution's own duration (started to finished), from ``rgrid status --json``."""
    execution = next(w for w in stderr.split() if w.startswith("exec_"))
    status = subprocess.run(
        [RGRID, "status", execution, "--json"], cwd=cwd, env=env, capture_output=True, check=True
    )
    return float(json.loads(status.stdout)["duration_s"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=1001)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rgrid-bench-"))
    project, env = hello_project(tmp)
    (project / "many.py").write_text(SCRIPT)
    count = str(options.files)
    commands = {
        "python many.py (real)": [real_python(), "many.py", count],
        "rgrid run --no-cache --remote-only": [RGRID, "run", "--no-cache", "--remote-only"],
        "rgrid run --no-cache (downloads)": [RGRID, "run", "--no-cache"],
    }
    for name in list(commands)[1:]:
        commands[name] += ["many.py", count]
    samples: dict[str, list[float]] = {name: [] for name in commands}
    durations: list[float] = []
    try:
        subprocess.run([RGRID, "server", "start"], env=env, check=True, capture_output=True)
        _run([RGRID, "run", "--no-cache", "many.py", "1"], project, env)  # warm
        for _ in range(options.runs):
            for name, argv in commands.items():
                elapsed, stderr = _run(argv, project, env)
                samples[name].append(elapsed)
                if "--remote-only" in argv:
                    durations.append(_duration_s(stderr, project, env))
    finally:
        subprocess.run([RGRID, "server", "stop"], env=env, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)

    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    print(f"many_outputs: {options.files} files of a few bytes, {options.runs} runs each")
    print(f"{'command':<40}{'median s':>10}{'per file ms':>13}")
    for name, values in samples.items():
        seconds = median(values)
        print(f"{name:<40}{seconds:>10.2f}{seconds * 1000 / options.files:>13.2f}")
    seconds = median(durations)
    print(
        f"{'the execution (rgrid status)':<40}{seconds:>10.2f}{seconds * 1000 / options.files:>13.2f}"
    )
    base = median(samples["python many.py (real)"])
    whole = median(samples["rgrid run --no-cache (downloads)"])
    print(f"\nrgrid run with downloads / bare python: {whole / base:.0f}x")


if __name__ == "__main__":
    main()
