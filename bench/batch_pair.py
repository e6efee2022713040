"""bench/batch_pair: bench/batch's 200-item batch on two checkouts of rgrid, in turn (issue 19,
item 3). This machine's speed swings by 2x between spells, so a change is judged by pairs run
minutes apart, not by two runs of bench/batch at different times. Each round runs, for each
checkout: a fresh grid of that checkout (its own venv), one warm run, the batch, then xargs -P2
+ bwrap right after it; it prints the batch's share of xargs, the grid server's CPU an item
and the machine's idle time an item.

Usage: .venv/bin/python bench/batch_pair.py [--rounds N] CHECKOUT_A CHECKOUT_B
(a checkout: a directory where `make install` made `.venv/bin/rgrid`, e.g. a `git worktree`)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
from pathlib import Path

from _common import real_python
from batch import (
    JOBS,
    CpuUse,
    plain_project,
    server_pid,
    timed_batch,
    warm_run,
    xargs_bwrap,
)


def one_round(rgrid: Path, python: str) -> tuple[float, float, CpuUse]:
    """(rgrid's seconds, xargs' seconds, the rgrid batch's CPU use) on a fresh grid."""
    tmp, env, project = plain_project("rgrid-bench-pair-")
    subprocess.run([str(rgrid), "server", "start"], env=env, check=True, capture_output=True)
    try:
        warm_run(project, env, rgrid)
        with CpuUse(server_pid(env)) as cpu:
            rgrid_s = timed_batch(project, env, rgrid)
        bare_s = xargs_bwrap(tmp, project / "data", python)
    finally:
        subprocess.run([str(rgrid), "server", "stop"], env=env, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return rgrid_s, bare_s, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of A then B (default 3)")
    parser.add_argument("checkouts", nargs=2, type=Path, metavar="CHECKOUT")
    options = parser.parse_args()
    rgrids = [c.resolve() / ".venv" / "bin" / "rgrid" for c in options.checkouts]
    for rgrid in rgrids:
        if not rgrid.is_file():
            parser.error(f"{rgrid} does not exist: run `make install` in that checkout")
    python = real_python()
    shares: dict[Path, list[float]] = {rgrid: [] for rgrid in rgrids}
    print(f"{'round':>5}  {'checkout':<30} {'rgrid s':>8} {'xargs s':>8} {'share':>6} "
          f"{'server ms/item':>15} {'idle ms/item':>13}")  # fmt: skip
    for number in range(1, options.rounds + 1):
        for checkout, rgrid in zip(options.checkouts, rgrids, strict=True):
            rgrid_s, bare_s, cpu = one_round(rgrid, python)
            shares[rgrid].append(bare_s / rgrid_s)
            print(
                f"{number:>5}  {checkout!s:<30} {rgrid_s:>8.2f} {bare_s:>8.2f} "
                f"{bare_s / rgrid_s:>6.0%} {cpu.own / JOBS * 1000:>15.1f} "
                f"{cpu.idle / JOBS * 1000:>13.1f}",
                flush=True,
            )
    for checkout, rgrid in zip(options.checkouts, rgrids, strict=True):
        values = ", ".join(f"{v:.0%}" for v in shares[rgrid])
        print(
            f"{checkout}: median share of xargs {statistics.median(shares[rgrid]):.0%} ({values})"
        )


if __name__ == "__main__":
    main()
