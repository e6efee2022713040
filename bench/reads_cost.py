"""bench/reads_cost: what observing a run's file opens (``sandbox.reads``, issue 14) costs.

Two local grids of this checkout side by side, one with ``RGRID_READ_TRACKING=off``;
``rgrid run hello.py --no-cache`` is timed against each, interleaved (A, B, A, B, …) so that the
machine's load drifts equally over both. Then, in this process, the observer's own work around
one run (``watch`` + ``finish``, no sandbox) with 1 and with 2,000 input files. Needs root.

Usage: .venv/bin/python bench/reads_cost.py [--runs 20]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from _common import free_port

from rgrid.sandbox import reads

RGRID = Path(sys.executable).parent / "rgrid"


@contextlib.contextmanager
def grid(home: Path, tracking: str) -> Iterator[dict[str, str]]:
    """A grid server of this checkout; yields the CLI's environment for it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RGRID_")}
    env.update(RGRID_HOME=str(home), HOME=str(home / "user"), RGRID_SLOTS="2")
    env.update(RGRID_READ_TRACKING=tracking)
    port = free_port()
    (home / "user").mkdir(parents=True)
    log = (home / "server.log").open("wb")
    server = subprocess.Popen(
        [str(RGRID), "server", "run", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (home / "admin.key").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)
        key = (home / "admin.key").read_text().strip()
        yield {**env, "RGRID_API_URL": f"http://127.0.0.1:{port}", "RGRID_API_KEY": key}
    finally:
        server.terminate()
        server.wait(30)


def one_run(env: dict[str, str], project: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [str(RGRID), "run", "--no-cache", "hello.py"], cwd=project, env=env, capture_output=True
    )
    if done.returncode != 0:
        raise SystemExit(f"rgrid run failed: {done.stderr.decode()[-800:]}")
    return time.perf_counter() - started


def observer_ms(tmp: Path, files: int, rounds: int = 20) -> float:
    """The median of ``watch`` + ``finish`` around nothing, with ``files`` inputs."""
    observer = reads.observer()
    if observer is None:
        raise SystemExit("fanotify is unavailable here (run as root)")
    work = tmp / f"files-{files}"
    work.mkdir()
    inputs = []
    for n in range(files):
        (work / f"f{n}.txt").write_text(str(n))
        inputs.append((f"f{n}.txt", work / f"f{n}.txt"))
    spent = []
    for _ in range(rounds):
        started = time.perf_counter()
        observer.watch(work, inputs).finish()
        spent.append(time.perf_counter() - started)
    return statistics.median(spent) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    options = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rgrid-bench-reads-"))
    project = tmp / "project"
    project.mkdir()
    (project / "hello.py").write_text('print("hello from", __name__)\n')
    samples: dict[str, list[float]] = {"off": [], "on": []}
    try:
        with grid(tmp / "home-off", "off") as off, grid(tmp / "home-on", "on") as on:
            envs = {"off": off, "on": on}
            for env in envs.values():  # warm: environment built, namespaces made
                for _ in range(3):
                    one_run(env, project)
            for _ in range(options.runs):
                for name, env in envs.items():
                    samples[name].append(one_run(env, project))
        small, large = observer_ms(tmp, 1), observer_ms(tmp, 2000)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"reads_cost: `rgrid run hello.py --no-cache`, {options.runs} interleaved runs each, "
        f"{os.cpu_count()} cores"
    )
    off_ms, on_ms = (statistics.median(samples[k]) * 1000 for k in ("off", "on"))
    p90 = [sorted(samples[k])[int(options.runs * 0.9) - 1] * 1000 for k in ("off", "on")]
    print(f"{'tracking off ms':>15} {'on ms':>8} {'extra ms':>9} {'p90 off':>8} {'p90 on':>7}")
    print(f"{off_ms:15.1f} {on_ms:8.1f} {on_ms - off_ms:+9.1f} {p90[0]:8.1f} {p90[1]:7.1f}")
    print(f"observer watch+finish: {small:.2f} ms with 1 input, {large:.2f} ms with 2,000")
    print("\ngoal: a few ms at most per execution")


if __name__ == "__main__":
    main()
