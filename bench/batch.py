"""bench/batch: 200 trivial jobs through rgrid at --parallel 2, against the sandboxed physical
limit (xargs -P2 running bwrap + python per input in its own directory); the same batch in a
project that also holds a 50 MB tree (issue 14: it travels with every item; goal: throughput
within 10% of the plain project's); the time to submit a 10,000-item batch and the server's
peak RSS while it runs. Also the CPU each job cost, from /proc: the machine's (busy, and idle
while the batch ran) for xargs and for rgrid, and the grid server's own for rgrid.

Usage: .venv/bin/python bench/batch.py [--repeat N] [--with-ray] [--ray-jobs N]

With ``--with-ray`` it also measures, in the same run, Ray Jobs (the closest peer: one
``submit_job`` per input) and plain Ray tasks on a local Ray cluster of 2 CPUs. Ray is installed
into its own venv (.bench/ray-venv) only then; rgrid and its tests never depend on it. Without
it, the Ray Jobs figure measured on this machine before the project existed is quoted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from _common import free_port, kill_processes_mentioning, real_python

RGRID = Path(sys.executable).parent / "rgrid"
ROOT = Path(__file__).resolve().parent.parent
RAY_VENV = ROOT / ".bench" / "ray-venv"
JOBS = 200
BIG_BATCH = 10_000
#: the project tree of the tree case: 50 files of 1 MB (at the budget's big-file limit)
TREE_FILES, TREE_FILE_BYTES = 50, 1000 * 1000
JOB = """\
import csv, json, os, sys
rows = list(csv.reader(open(sys.argv[1])))
os.makedirs("out", exist_ok=True)
json.dump({"rows": len(rows)}, open("out/summary.json", "w"))
"""
RAY_JOBS_S_PER_JOB = 0.9  # measured here before the project (JobSubmissionClient, local Ray)


def make_inputs(root: Path, count: int, size: int = 1024) -> None:
    root.mkdir(parents=True)
    line = "a,b,c,d\n"
    body = line * (size // len(line))
    for i in range(count):
        (root / f"in{i:05d}.csv").write_text(body)


def make_tree(root: Path) -> None:
    """50 MB of project files besides the script and its inputs (random: nothing dedupes)."""
    for i in range(TREE_FILES):
        folder = root / "assets" / f"set{i // 10}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"part{i:02d}.bin").write_bytes(os.urandom(TREE_FILE_BYTES))


def timed_batch(project: Path, env: dict[str, str], rgrid: Path = RGRID) -> float:
    """Seconds for the 200-item batch in ``project``, every output checked to be back."""
    shutil.rmtree(project / "outputs", ignore_errors=True)  # a round before brought them
    start = time.perf_counter()
    subprocess.run(
        [str(rgrid), "run", "--batch", "data/*.csv", "--parallel", "2", "--no-cache", "job.py"],
        cwd=project,
        env=env,
        check=True,
        capture_output=True,
    )
    seconds = time.perf_counter() - start
    assert len(list((project / "outputs").glob("*/out/summary.json"))) == JOBS
    return seconds


def process_ticks(pid: int) -> tuple[int, int]:
    """A process's CPU so far, its threads' (ended ones too): (user, system) clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])  # utime, stime


class CpuUse:
    """The machine's CPU over a span (``/proc/stat``, all cores: busy and idle ticks); if a
    pid is given, that process's own (``/proc/PID/stat``: user + system, its threads too); and
    this process's children's that ended in the span (the CLI: user + system)."""

    def __init__(self, pid: int | None = None) -> None:
        self.pid = pid
        self.busy = self.idle = self.own = self.children = 0.0

    @staticmethod
    def _children() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    @staticmethod
    def _machine() -> tuple[float, float]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3]
        return sum(fields[:8]) - idle, idle  # user … steal, less idle (iowait counts as busy)

    def _own(self) -> float:
        return 0.0 if self.pid is None else sum(process_ticks(self.pid))

    def __enter__(self) -> CpuUse:
        self._start = (*self._machine(), self._own(), self._children())
        return self

    def __exit__(self, *_exc: object) -> None:
        (busy, idle), own = self._machine(), self._own()
        tick = os.sysconf("SC_CLK_TCK")
        self.busy = (busy - self._start[0]) / tick
        self.idle = (idle - self._start[1]) / tick
        self.own = (own - self._start[2]) / tick
        self.children = self._children() - self._start[3]


def bench_env(tmp: Path) -> dict[str, str]:
    """The environment of a local grid of 2 slots under ``tmp``, no RGRID_* setting inherited."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RGRID_")}
    env.update(RGRID_HOME=str(tmp / "home"), HOME=str(tmp / "user"), RGRID_SLOTS="2")
    return env


def plain_project(prefix: str) -> tuple[Path, dict[str, str], Path]:
    """A temporary directory, the environment of a grid under it (``bench_env``) and in it a
    project holding the job and its 200 inputs: (directory, environment, project)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    project = tmp / "project"
    project.mkdir()
    (project / "job.py").write_text(JOB)
    make_inputs(project / "data", JOBS)
    return tmp, bench_env(tmp), project


def warm_run(project: Path, env: dict[str, str], rgrid: Path = RGRID) -> None:
    """One run of the job in ``project``, as a user's first run would be (its environment built,
    its tree uploaded); its output removed, else every item's output would equal it, already in
    the tree: not an output."""
    subprocess.run(
        [str(rgrid), "run", "job.py", "data/in00000.csv"],
        cwd=project,
        env=env,
        check=True,
        capture_output=True,
    )
    shutil.rmtree(project / "out")


def server_pid(env: dict[str, str]) -> int:
    return int(json.loads((Path(env["RGRID_HOME"]) / "server.json").read_text())["pid"])


def xargs_bwrap(tmp: Path, inputs: Path, python: str) -> float:
    """Seconds for the sandboxed physical limit: each input copied into a fresh directory and
    the job run there under bwrap, two at a time."""
    prefix = os.path.dirname(os.path.dirname(os.path.realpath(python)))
    (tmp / "job.py").write_text(JOB)
    runner = tmp / "one.sh"
    runner.write_text(
        '#!/bin/sh\nd=$(mktemp -d)\ncp "$1" "$d/in.csv"\ncp ' + str(tmp / "job.py") + ' "$d/"\n'
        f"exec bwrap --die-with-parent --unshare-pid --proc /proc --dev /dev --tmpfs /tmp "
        f"--ro-bind /usr /usr --ro-bind-try /bin /bin --ro-bind-try /lib /lib "
        f"--ro-bind-try /lib64 /lib64 --ro-bind /etc /etc --ro-bind {prefix} {prefix} "
        f'--bind "$d" "$d" --chdir "$d" {python} -I job.py in.csv\n'
    )
    runner.chmod(0o755)
    files = "\n".join(str(p) for p in sorted(inputs.iterdir()))
    start = time.perf_counter()
    subprocess.run(["xargs", "-P2", "-n1", str(runner)], input=files, text=True, check=True)
    return time.perf_counter() - start


def ray_python(python: str) -> Path:
    """The interpreter of a venv with ray in it, made on first use with uv."""
    interpreter = RAY_VENV / "bin" / "python"
    if not interpreter.exists():
        uv = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
        print("installing ray into .bench/ray-venv (once) ...", file=sys.stderr)
        subprocess.run([uv, "venv", "-q", "--python", python, str(RAY_VENV)], check=True)
        subprocess.run(
            [uv, "pip", "install", "-q", "--python", str(interpreter), "ray[default]"], check=True
        )
    return interpreter


def ray_figures(tmp: Path, python: str, inputs: Path, jobs: int) -> dict[str, float]:
    """Ray Jobs and Ray tasks over ``inputs`` on a local 2-CPU Ray cluster (bench/ray_peer.py)."""
    interpreter = ray_python(python)
    ray = str(interpreter.parent / "ray")
    gcs, dashboard = free_port(), free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run(
        [ray, "start", "--head", "--num-cpus", "2", "--node-ip-address", "127.0.0.1",
         "--port", str(gcs), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
         "--include-dashboard", "true", "--disable-usage-stats", "--temp-dir", str(tmp / "ray")],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    try:
        (tmp / "ray-job.py").write_text(JOB)
        out = subprocess.run(
            [str(interpreter), str(ROOT / "bench" / "ray_peer.py"), f"127.0.0.1:{gcs}",
             f"http://127.0.0.1:{dashboard}", str(tmp / "ray-job.py"), str(inputs), str(jobs), "2"],
            env=env, check=True, capture_output=True, text=True,
        )  # fmt: skip
    finally:  # by its own temp dir: `ray stop` would stop every Ray of the machine
        kill_processes_mentioning(str(tmp / "ray"))
    figures: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def follow_costs(env: dict[str, str], batch_id: str) -> tuple[float, float]:
    """Seconds for one poll of a big batch's items: all of them (the first poll of a follower),
    and only the changed ones (every later poll), median of 5 each."""
    os.environ.update(env)  # the client finds the local grid as the CLI would
    from rgrid.cli.context import connect

    client = connect()

    def median(poll: Callable[[], object]) -> float:
        times = []
        for _ in range(5):
            start = time.perf_counter()
            poll()
            times.append(time.perf_counter() - start)
        return sorted(times)[2]

    first = client.batch_items(batch_id)  # more than CHANGES_LAG after the submission
    full = median(lambda: client.batch_items(batch_id))
    changes = median(lambda: client.batch_items(batch_id, first.next_changed_after))
    return full, changes


def peak_rss_mib(pid: int, stop: threading.Event, peak: list[float]) -> None:
    while not stop.is_set():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    peak[0] = max(peak[0], int(line.split()[1]) / 1024)
        except OSError:
            return
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--with-ray", action="store_true", help="also measure Ray Jobs and tasks")
    parser.add_argument(
        "--ray-jobs",
        type=int,
        default=50,
        help="Ray Jobs to time (each takes about a second; default 50)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="rounds of rgrid then xargs; the figures are the median round's (default 3)",
    )
    options = parser.parse_args()
    tmp, env, project = plain_project("rgrid-bench-batch-")
    with_tree, many = tmp / "with-tree", tmp / "many"
    for folder in (with_tree, many):
        folder.mkdir()
        (folder / "job.py").write_text(JOB)
    shutil.copytree(project / "data", with_tree / "data")
    make_tree(with_tree)
    make_inputs(many / "big", BIG_BATCH, size=16)
    python = real_python()
    try:
        subprocess.run([str(RGRID), "server", "start"], env=env, check=True, capture_output=True)
        warm_run(project, env)  # the environment exists
        warm_run(with_tree, env)  # the tree is uploaded once
        pid = server_pid(env)
        # rgrid and xargs in turn, each round's pair minutes apart at most: this machine's
        # speed swings by 2x between spells, and a ratio of two runs in different spells says
        # more of the machine than of rgrid
        rounds = []
        for _ in range(options.repeat):
            with CpuUse(pid) as rgrid_cpu:
                rgrid_s = timed_batch(project, env)
            with CpuUse() as bare_cpu:
                bare_s = xargs_bwrap(tmp, project / "data", python)
            rounds.append((bare_s / rgrid_s, rgrid_s, bare_s, rgrid_cpu, bare_cpu))
        # the figures of the median round (by its ratio)
        _, rgrid_s, bare_s, rgrid_cpu, bare_cpu = sorted(rounds, key=lambda r: r[0])[
            len(rounds) // 2
        ]
        tree_s = timed_batch(with_tree, env)
        stop, peak = threading.Event(), [0.0]
        watcher = threading.Thread(target=peak_rss_mib, args=(pid, stop, peak))
        watcher.start()
        start = time.perf_counter()
        submitted = subprocess.run(
            [str(RGRID), "run", "--batch", "big/*.csv", "--parallel", "2", "--detach", "job.py"],
            cwd=many,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        submit_s = time.perf_counter() - start
        time.sleep(5)  # and while it runs
        stop.set()
        watcher.join()
        full_poll_s, changes_poll_s = follow_costs(env, submitted.stdout.strip())
        subprocess.run(
            [str(RGRID), "cancel", submitted.stdout.strip()],
            cwd=project,
            env=env,
            capture_output=True,
        )
    finally:
        subprocess.run([str(RGRID), "server", "stop"], env=env, capture_output=True)
    try:
        ray = (
            ray_figures(tmp, python, project / "data", options.ray_jobs) if options.with_ray else {}
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = [
        ("xargs -P2 + bwrap + python (physical limit)", JOBS, bare_s),
        ("rgrid run --batch (uploads, outputs back)", JOBS, rgrid_s),
        ("rgrid run --batch, project with a 50 MB tree", JOBS, tree_s),
    ]
    if ray:
        rows.append(("Ray Jobs, one submit_job per input", int(ray["jobs"]), ray["jobs_s"]))
        rows.append(("Ray tasks running the same subprocess", int(ray["tasks"]), ray["tasks_s"]))
        ray_rate, ray_note = ray["jobs"] / ray["jobs_s"], "measured in this run"
    else:
        rows.append(("Ray Jobs (quoted: 0.9 s a job, not run)", JOBS, JOBS * RAY_JOBS_S_PER_JOB))
        ray_rate, ray_note = 1 / RAY_JOBS_S_PER_JOB, "quoted; --with-ray measures it"
    print(f"batch: trivial jobs (1 KB CSV in, small JSON out), parallel 2, {os.cpu_count()} cores")
    shares = ", ".join(f"{r[0]:.0%}" for r in rounds)
    print(f"rounds of rgrid then xargs: {len(rounds)}, rgrid's share in each: {shares}")
    print("(the rows below are the median round's; the tree row is one run after the rounds)")
    print(f"{'runner':<46} {'jobs':>5} {'seconds':>8} {'jobs/s':>8}")
    for name, count, seconds in rows:
        print(f"{name:<46} {count:>5} {seconds:>8.2f} {count / seconds:>8.1f}")
    print(f"\nCPU per job, ms: {'machine busy':>13} {'idle':>6} {'grid server':>12} {'CLI':>5}")
    for name, cpu in (("xargs -P2 + bwrap", bare_cpu), ("rgrid run --batch", rgrid_cpu)):
        own = f"{cpu.own / JOBS * 1000:>12.0f}" if cpu.pid else f"{'':>12}"
        cli = f"{cpu.children / JOBS * 1000:>5.0f}" if cpu.pid else f"{'':>5}"
        print(
            f"{name:<17} {cpu.busy / JOBS * 1000:>13.0f} {cpu.idle / JOBS * 1000:>6.0f} {own} {cli}"
        )
    rgrid_rate = JOBS / rgrid_s
    print(
        f"\nrgrid throughput: {bare_s / rgrid_s:.0%} of xargs+bwrap (issue 19's goal: >= 80%), "
        f"{rgrid_rate / ray_rate:.0f}x Ray Jobs ({ray_note}; goal >= 10x)"
    )
    print(
        f"with a 50 MB project tree: {rgrid_s / tree_s:.0%} of the plain project's throughput "
        "(goal >= 90%)"
    )
    print(
        f"submitting a {BIG_BATCH}-item batch: {submit_s:.2f} s end to end (goal <= 10 s); "
        f"server peak RSS {peak[0]:.0f} MiB (goal <= 400 MiB)"
    )
    print(
        f"following it: the first poll (all {BIG_BATCH} items) {full_poll_s * 1000:.0f} ms, "
        f"each later poll (changes only) {changes_poll_s * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
