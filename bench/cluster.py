"""bench/cluster: the 200-item batch of bench/batch on a local Ray cluster (a head without CPUs
and two worker nodes of one CPU, all on loopback) against the local executor with 2 slots on the
same machine, and against Ray Jobs (one ``submit_job`` per item, on a 2-CPU Ray of its own), in
one run; and the time from `rgrid run` to the script's first output line on a warm grid, local
and on the cluster.

Usage: .venv/bin/python bench/cluster.py [--ray-jobs N]

Goals (issue 16): the cluster ≥ 60% of the local executor's throughput (Ray's own overhead on
the same two cores), ≥ 20x Ray Jobs, first line ≤ 2x the local grid's.

Both grids keep their database and blobs on this machine (SQLite, a blob directory), so the
figures compare the executors; Ray nodes then fetch inputs through the control plane.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from _common import free_port, real_python
from batch import JOB, JOBS, RGRID, make_inputs, ray_figures, timed_batch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.raycluster import RAY_ENV, start_ray_cluster  # noqa: E402 (after the path)

FIRST = "import time\nprint('first', flush=True)\ntime.sleep(0.3)\n"
LATENCY_RUNS = 7


@contextmanager
def grid(home: Path, **settings: str) -> Iterator[dict[str, str]]:
    """A grid server in the foreground on a free port; the CLI's environment for it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RGRID_")}
    env.update(RGRID_HOME=str(home), HOME=str(home.parent / "user"), **RAY_ENV, **settings)
    port = free_port()
    home.mkdir(parents=True)
    log = (home / "server.log").open("wb")
    server = subprocess.Popen(
        [str(RGRID), "server", "run", "--port", str(port)], env=env, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 60
        while not (home / "admin.key").exists() or not _healthy(port):
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit((home / "server.log").read_text()[-2000:])
            time.sleep(0.2)
        env.update(
            RGRID_API_URL=f"http://127.0.0.1:{port}",
            RGRID_API_KEY=(home / "admin.key").read_text().strip(),
        )
        yield env
    finally:
        server.terminate()
        server.wait(30)


def _healthy(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def first_line_s(project: Path, env: dict[str, str]) -> float:
    """Median seconds from starting `rgrid run` to the script's first stdout line."""
    samples = []
    for _ in range(LATENCY_RUNS):
        start = time.perf_counter()
        run = subprocess.Popen(
            [str(RGRID), "run", "--no-cache", "first.py"],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert run.stdout is not None
        line = run.stdout.readline()
        samples.append(time.perf_counter() - start)
        run.wait(60)
        if line != b"first\n" or run.returncode != 0:
            raise SystemExit(f"first.py: {line!r}, exit {run.returncode}")
    return statistics.median(samples)


def measure(project: Path, env: dict[str, str]) -> tuple[float, float]:
    """(batch seconds, first-line seconds) on the grid ``env`` names, warmed first."""
    for script in ("job.py", "first.py"):  # the environment exists, the tree is uploaded
        args = [str(RGRID), "run", script] + (["data/in00000.csv"] if script == "job.py" else [])
        subprocess.run(args, cwd=project, env=env, check=True, capture_output=True)
    shutil.rmtree(project / "out", ignore_errors=True)
    shutil.rmtree(project / "outputs", ignore_errors=True)
    batch_s = timed_batch(project, env)
    shutil.rmtree(project / "outputs", ignore_errors=True)
    return batch_s, first_line_s(project, env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ray-jobs", type=int, default=50, help="Ray Jobs to time (default 50)")
    options = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rgrid-bench-cluster-"))
    project = tmp / "project"
    project.mkdir()
    (project / "job.py").write_text(JOB)
    (project / "first.py").write_text(FIRST)
    make_inputs(project / "data", JOBS)
    try:
        with grid(tmp / "local", RGRID_SLOTS="2") as env:
            local_s, local_first = measure(project, env)
        with start_ray_cluster(workers=2) as cluster:
            with grid(tmp / "cluster", RGRID_EXECUTOR=f"ray://{cluster.address}") as env:
                time.sleep(3)  # the nodes are probed
                ray_s, ray_first = measure(project, env)
        jobs = ray_figures(tmp, real_python(), project / "data", options.ray_jobs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    local_rate, ray_rate = JOBS / local_s, JOBS / ray_s
    jobs_rate = jobs["jobs"] / jobs["jobs_s"]
    print(f"cluster: {JOBS} trivial jobs at --parallel 2; {os.cpu_count()} cores in all")
    print(f"{'runner':<52} {'jobs':>5} {'seconds':>8} {'jobs/s':>7} {'first line':>11}")
    for name, count, seconds, first in (
        ("rgrid, local executor, 2 slots", JOBS, local_s, f"{local_first * 1000:.0f} ms"),
        ("rgrid, Ray executor, head + 2 nodes of 1 CPU", JOBS, ray_s, f"{ray_first * 1000:.0f} ms"),
        ("Ray Jobs, one submit_job per item (2 CPUs)", int(jobs["jobs"]), jobs["jobs_s"], "-"),
    ):
        print(f"{name:<52} {count:>5} {seconds:>8.2f} {count / seconds:>7.1f} {first:>11}")
    print(
        f"Ray executor / local executor throughput: {ray_rate / local_rate:.0%} (goal >= 60%); "
        f"/ Ray Jobs: {ray_rate / jobs_rate:.1f}x (goal >= 20x); "
        f"first line: {ray_first / local_first:.2f}x the local grid's (goal <= 2x)"
    )


if __name__ == "__main__":
    main()
