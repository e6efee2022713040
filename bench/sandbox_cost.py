"""bench/sandbox_cost: what the stronger sandbox (issue 13) costs per execution.

Two local grids side by side, each with its own RGRID_HOME: one running this checkout, one
running a baseline commit's ``src/`` (default: the commit before the cgroup / user-mode network
/ unprivileged-user sandbox), both with this venv's packages. ``rgrid run --no-cache hello.py``
is timed against each, interleaved (A, B, A, B, …) so that the machine's load drifts equally
over both, with network on and with ``--no-network``.

Usage: .venv/bin/python bench/sandbox_cost.py [--runs 20] [--baseline ee41a31]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from _common import free_port

BIN = Path(sys.executable).parent
RGRID = BIN / "rgrid"
REPO = Path(__file__).resolve().parent.parent
BASELINE = "ee41a31"


def baseline_src(revision: str, into: Path) -> Path:
    """``src/`` of ``revision``, unpacked into ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    archive = into / "baseline.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "archive", revision, "src"], cwd=REPO, stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    # compiled as `make install` compiles this checkout: a fair start-up for both
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", str(into / "src")])
    return into / "src"


@contextlib.contextmanager
def grid(src: Path, home: Path, user: Path) -> Iterator[dict[str, str]]:
    """A grid server running the code in ``src``; yields the CLI's environment for it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RGRID_")}
    env.update(PYTHONPATH=str(src), RGRID_HOME=str(home), HOME=str(user), RGRID_SLOTS="2")
    port = free_port()
    home.mkdir(parents=True)
    user.mkdir(parents=True)
    log = (home.parent / f"{home.name}.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "rgrid", "server", "run", "--port", str(port)],
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


def one_run(env: dict[str, str], project: Path, extra: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [str(RGRID), "run", "--no-cache", *extra, "hello.py"],
        cwd=project,
        env=env,
        capture_output=True,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"rgrid run failed: {done.stderr.decode()[-800:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--baseline", default=BASELINE)
    options = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rgrid-bench-sandbox-"))
    project = tmp / "project"
    project.mkdir()
    (project / "hello.py").write_text('print("hello from", __name__)\n')
    variants = {"baseline": baseline_src(options.baseline, tmp / "base"), "now": REPO / "src"}
    samples: dict[tuple[str, str], list[float]] = {}
    try:
        with (
            grid(variants["baseline"], tmp / "home-base", tmp / "user-base") as base_env,
            grid(variants["now"], tmp / "home-now", tmp / "user-now") as now_env,
        ):
            envs = {"baseline": base_env, "now": now_env}
            for mode, extra in (("network on", []), ("--no-network", ["--no-network"])):
                for env in envs.values():  # warm: environment built, namespaces made
                    for _ in range(3):
                        one_run(env, project, extra)
                for _ in range(options.runs):
                    for name, env in envs.items():
                        samples.setdefault((name, mode), []).append(one_run(env, project, extra))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"sandbox_cost: `rgrid run --no-cache hello.py`, {options.runs} interleaved runs each, "
        f"baseline {options.baseline}, {os.cpu_count()} cores"
    )
    print(
        f"{'mode':<14} {'baseline ms':>11} {'now ms':>8} {'extra ms':>9} {'p90 base':>9} {'p90 now':>8}"
    )
    for mode in ("network on", "--no-network"):
        base, now = samples[("baseline", mode)], samples[("now", mode)]
        b, n = statistics.median(base) * 1000, statistics.median(now) * 1000
        p90 = [sorted(s)[int(len(s) * 0.9) - 1] * 1000 for s in (base, now)]
        print(f"{mode:<14} {b:11.1f} {n:8.1f} {n - b:+9.1f} {p90[0]:9.1f} {p90[1]:8.1f}")
    print("\ngoal: at most +10 ms per execution over the baseline")


if __name__ == "__main__":
    main()
