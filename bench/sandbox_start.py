"""bench/sandbox_start: what one sandboxed process costs the grid, this checkout against a
baseline commit's sandbox (default: the one before issue 13's cgroup / user-mode network /
unprivileged user).

Each variant runs ``python -c pass`` through ``detect().run(...)`` in its own process (the
sandbox package of that variant on PYTHONPATH), in rounds that alternate the variants so load
drifts over both alike. Reported: the median wall time of one ``run`` (spawn to reaped, output
drained), with network on and off, and the same for bare ``python -c pass``.

Usage: .venv/bin/python bench/sandbox_start.py [--runs 40] [--rounds 4] [--baseline ee41a31]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from sandbox_cost import BASELINE, REPO, baseline_src

CHILD = r"""
import asyncio, json, sys, time, inspect
from pathlib import Path
from rgrid import sandbox
from rgrid.sandbox import SandboxSpec

runs, network, workdir = int(sys.argv[1]), sys.argv[2] == "on", Path(sys.argv[3])
prefix = Path(sys.base_prefix)
python = str(prefix / "bin" / "python3")
fields = inspect.signature(SandboxSpec).parameters

async def main():
    box = sandbox.detect()
    async def sink(stream, data):
        pass
    kwargs = {"network": network}
    if "cpus" in fields:
        kwargs["cpus"] = 1.0
    spec = SandboxSpec([python, "-c", "pass"], workdir, {"PATH": "/usr/bin:/bin"},
                       ((prefix, prefix),), **kwargs)
    for _ in range(3):
        await box.run(spec, sink)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = await box.run(spec, sink)
        times.append(time.perf_counter() - started)
        assert result.exit_code == 0, result
    print(json.dumps(times))

asyncio.run(main())
"""


def measure(src: Path, runs: int, network: str, workdir: Path) -> list[float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RGRID_")}
    env["PYTHONPATH"] = str(src)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(runs), network, str(workdir)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return [float(t) for t in json.loads(done.stdout.strip().splitlines()[-1])]


def bare(runs: int) -> list[float]:
    import time

    python = str(Path(sys.base_prefix) / "bin" / "python3")
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([python, "-c", "pass"], check=True)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--baseline", default=BASELINE)
    options = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rgrid-bench-start-"))
    workdir = tmp / "work"
    workdir.mkdir()
    variants = {"baseline": baseline_src(options.baseline, tmp / "base"), "now": REPO / "src"}
    samples: dict[tuple[str, str], list[float]] = {}
    try:
        per_round = max(1, options.runs // options.rounds)
        for _ in range(options.rounds):
            for network in ("on", "off"):
                for name, src in variants.items():
                    samples.setdefault((name, network), []).extend(
                        measure(src, per_round, network, workdir)
                    )
        plain = bare(options.runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"sandbox_start: one sandboxed `python -c pass`, {options.runs} runs per cell in "
        f"{options.rounds} alternating rounds, baseline {options.baseline}, {os.cpu_count()} cores"
    )
    print(f"bare python -c pass: {statistics.median(plain) * 1000:.1f} ms")
    print(f"{'network':<8} {'baseline ms':>11} {'now ms':>8} {'extra ms':>9}")
    for network in ("on", "off"):
        base = statistics.median(samples[("baseline", network)]) * 1000
        now = statistics.median(samples[("now", network)]) * 1000
        print(f"{network:<8} {base:11.1f} {now:8.1f} {now - base:+9.1f}")
    print("\ngoal: at most +10 ms per execution over the baseline")


if __name__ == "__main__":
    main()
