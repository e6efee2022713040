"""bench/server_threads: where the grid server's CPU goes during bench/batch's 200-item batch,
by thread (issue 19, item 3): each thread's user and system time from /proc/PID/task, per
item, over the batch alone (a warm grid). Threads are named by ``py-spy dump`` when py-spy is
on PATH (``pip install py-spy``; Python does not name its threads for the kernel), else shown
by thread id. Threads that ended during the batch (a pool's short-lived ones) count in the
total only.

Usage: .venv/bin/python bench/server_threads.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from batch import (
    JOBS,
    RGRID,
    plain_project,
    process_ticks,
    server_pid,
    timed_batch,
    warm_run,
)

TICK = os.sysconf("SC_CLK_TCK")


def thread_times(pid: int) -> dict[str, tuple[int, int]]:
    """Each live thread's (user, system) ticks."""
    times = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended meanwhile
        times[tid] = (int(fields[11]), int(fields[12]))
    return times


def thread_names(pid: int) -> dict[str, str]:
    """Thread id → its Python name, numbered pool threads folded into one (``asyncio_N``)."""
    spy = shutil.which("py-spy")
    if spy is None:
        return {}
    dump = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True)
    names = {}
    for line in dump.stdout.splitlines():
        match = re.match(r'Thread (\d+) \(\w+\): "([^"]*)"', line.strip())
        if match:
            name = re.sub(r"Thread-\d+", "Thread-N", match.group(2))
            names[match.group(1)] = re.sub(r"[-_]\d+$", "_N", name)
    return names


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=1)
    options = parser.parse_args()
    tmp, env, project = plain_project("rgrid-bench-threads-")
    try:
        subprocess.run([str(RGRID), "server", "start"], env=env, check=True, capture_output=True)
        warm_run(project, env)
        pid = server_pid(env)
        for _ in range(options.rounds):
            before, whole_before = thread_times(pid), process_ticks(pid)
            seconds = timed_batch(project, env)
            after, whole_after = thread_times(pid), process_ticks(pid)
            report(seconds, before, after, whole_before, whole_after, thread_names(pid))
    finally:
        subprocess.run([str(RGRID), "server", "stop"], env=env, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def report(
    seconds: float,
    before: dict[str, tuple[int, int]],
    after: dict[str, tuple[int, int]],
    whole_before: tuple[int, int],
    whole_after: tuple[int, int],
    names: dict[str, str],
) -> None:
    per_item = 1000 / TICK / JOBS  # ticks → ms an item
    by_name: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for tid, (user, system) in after.items():
        user0, system0 = before.get(tid, (0, 0))
        row = by_name[names.get(tid, f"thread {tid}")]
        row[0] += user - user0
        row[1] += system - system0
    print(f"200-item batch at --parallel 2: {seconds:.2f} s; the grid server's CPU, ms an item")
    print(f"{'thread':<40} {'user':>6} {'system':>7}")
    for name, (user, system) in sorted(by_name.items(), key=lambda kv: -sum(kv[1])):
        if user or system:
            print(f"{name:<40} {user * per_item:>6.1f} {system * per_item:>7.1f}")
    user = whole_after[0] - whole_before[0]
    system = whole_after[1] - whole_before[1]
    print(
        f"{'the whole process (ended threads too)':<40} {user * per_item:>6.1f} {system * per_item:>7.1f}"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
