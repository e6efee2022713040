"""bench/cache: end-to-end wall time of a result-cache hit, against the original run of the same
2-second script and against bare python running it, in one run.

A hit is `rgrid run slow.py data.csv` typed again unchanged: the CLI hashes the files, finds them
all on the grid, submits, gets back a finished execution (its original's result), replays its
log and finds its output file already in place. Usage: .venv/bin/python bench/cache.py [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import real_python, timed

BIN = Path(sys.executable).parent
RGRID = BIN / "rgrid"
SCRIPT = """\
import json, os, sys, time
time.sleep(2)
rows = open(sys.argv[1]).read().splitlines()
os.makedirs("out", exist_ok=True)
json.dump({"rows": len(rows)}, open("out/result.json", "w"))
print("processed", len(rows), "rows")
"""


def row(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return f"{name:<44} {statistics.median(samples) * 1000:>9.1f} {p90 * 1000:>9.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--no-big", action="store_true", help="Skip the hit with a 1 GiB input (issue 19's row)."
    )
    options = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rgrid-bench-cache-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RGRID_")}
    env.update(RGRID_HOME=str(tmp / "home"), HOME=str(tmp / "user"))
    project = tmp / "project"
    project.mkdir()
    (project / "slow.py").write_text(SCRIPT)
    (project / "data.csv").write_text("a,b\n" * 1000)
    try:
        subprocess.run([str(RGRID), "server", "start"], env=env, check=True, capture_output=True)
        # the original: a miss that runs the script (environment already warm after the first)
        timed([str(RGRID), "run", "--no-cache", "slow.py", "data.csv"], 1, project, env)
        original = timed([str(RGRID), "run", "--no-cache", "slow.py", "data.csv"], 3, project, env)
        hits = timed([str(RGRID), "run", "slow.py", "data.csv"], options.runs, project, env)
        check = subprocess.run(
            [str(RGRID), "run", "slow.py", "data.csv"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
        )
        assert "rgrid: cached" in check.stderr, check.stderr  # they were hits
        bare = timed([real_python(), "slow.py", "data.csv"], 3, project, env)
        big = None if options.no_big else big_input_hits(project, env, options.runs)
    finally:
        subprocess.run([str(RGRID), "server", "stop"], env=env, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"cache: a 2-second script, {options.runs} hits, {os.cpu_count()} cores")
    print(f"{'command':<44} {'median ms':>9} {'p90 ms':>9}")
    print(row("python3 slow.py data.csv (bare)", bare))
    print(row("rgrid run slow.py data.csv (runs it)", original))
    print(row("rgrid run slow.py data.csv (cache hit)", hits))
    hit = statistics.median(hits)
    print(
        f"\ncache hit: {hit * 1000:.0f} ms end to end (goal <= 150 ms), "
        f"{statistics.median(original) / hit:.0f}x faster than running it, "
        f"{statistics.median(bare) / hit:.0f}x faster than bare python"
    )
    if big is not None:
        small_hits, big_hits = big
        print(row("rgrid run size.py small.csv (hit, 1 KB input)", small_hits))
        print(row("rgrid run size.py big.bin (hit, 1 GiB input)", big_hits))
        ratio = statistics.median(big_hits) / statistics.median(small_hits)
        print(f"a hit with a 1 GiB input: {ratio:.2f}x one with a 1 KB input (goal <= 1.3x)")


def big_input_hits(
    project: Path, env: dict[str, str], runs: int
) -> tuple[list[float], list[float]]:
    """Cache hits of a script given a 1 KB file and given a 1 GiB one (both run once first,
    which uploads them): an unchanged file is not hashed again (the CLI's hash cache)."""
    (project / "size.py").write_text("import os, sys\nprint(os.path.getsize(sys.argv[1]))\n")
    (project / "small.csv").write_text("x\n" * 500)
    with (project / "big.bin").open("wb") as out:
        for _ in range(16):
            out.write(os.urandom(64 * 1024**2))
    results = []
    for name in ("small.csv", "big.bin"):
        timed([str(RGRID), "run", "--yes", "size.py", name], 1, project, env)  # uploads it
        results.append(timed([str(RGRID), "run", "size.py", name], runs, project, env))
        check = subprocess.run(
            [str(RGRID), "run", "size.py", name],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
        )
        assert "rgrid: cached" in check.stderr, check.stderr  # they were hits
    (project / "big.bin").unlink()
    return results[0], results[1]


if __name__ == "__main__":
    main()
