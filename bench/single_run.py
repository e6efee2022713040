"""bench/single_run: the overhead of `rgrid run hello.py` over bare python, in one run.

Measures (median and p90 over N runs, warm grid): the real interpreter running hello.py, the same
under bubblewrap, `rgrid run hello.py` against a local grid daemon; plus `rgrid --help` and the
grid's idle RSS; and `rgrid run hello.py` in a project directory of 2,000 small files (20 MB) against
the empty one, runs of the two alternating (issue 14: the project tree travels; goal <= 20 ms
more). Usage: .venv/bin/python bench/single_run.py [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import HELLO, hello_project, median_ms, p90_ms, real_python, timed

BIN = Path(sys.executable).parent
TREE_FILES = 2000
TREE_FILE_BYTES = 10_000
RGRID = BIN / "rgrid"


def bwrap_argv(python: str, script: str, workdir: Path) -> list[str]:
    prefix = os.path.dirname(os.path.dirname(os.path.realpath(python)))
    argv = [
        "bwrap",
        "--die-with-parent",
        "--unshare-pid",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
    ]
    for path in ("/usr", "/bin", "/lib", "/lib64", "/etc"):
        if os.path.exists(path):
            argv += ["--ro-bind", path, path]
    argv += [
        "--ro-bind",
        prefix,
        prefix,
        "--bind",
        str(workdir),
        str(workdir),
        "--chdir",
        str(workdir),
        python,
        "-I",
        script,
    ]
    return argv


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def row(name: str, samples: list[float], base: float | None) -> str:
    med, p90 = median_ms(samples), p90_ms(samples)
    extra = f"{med - base:+8.1f}" if base is not None else f"{'':>8}"
    return f"{name:<34} {med:9.1f} {p90:9.1f} {extra}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    tmp = Path(tempfile.mkdtemp(prefix="rgrid-bench-"))
    project, env = hello_project(tmp)
    tree = tmp / "tree-project"
    for i in range(TREE_FILES):
        folder = tree / f"d{i // 100:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:04d}.bin").write_bytes(os.urandom(TREE_FILE_BYTES))
    (tree / "hello.py").write_text(HELLO)
    old = time.time() - 60  # an existing project: older than the hash cache's racy window
    for path in tree.rglob("*"):
        os.utime(path, (old, old))
    python = real_python()
    try:
        subprocess.run([str(RGRID), "server", "start"], env=env, check=True, capture_output=True)
        timed(
            [str(RGRID), "run", "--no-cache", "hello.py"], 3, project, env
        )  # warm: base env built, caches hot
        bare = timed([python, "hello.py"], runs, project, env)
        boxed = (
            timed(bwrap_argv(python, "hello.py", project), runs, project, env)
            if shutil.which("bwrap")
            else []
        )
        run = [str(RGRID), "run", "--no-cache", "hello.py"]
        timed(run, 2, tree, env)  # uploads, hashes, builds the tree's layer
        # alternated, so that the machine's drift weighs on both alike
        rgrid, in_tree = [], []
        for _ in range(runs):
            rgrid += timed(run, 1, project, env)
            in_tree += timed(run, 1, tree, env)
        helps = timed([str(RGRID), "--help"], runs, project, env)
        pid = int(__import__("json").loads((tmp / "home" / "server.json").read_text())["pid"])
        time.sleep(2)
        idle = rss_mib(pid)
    finally:
        subprocess.run([str(RGRID), "server", "stop"], env=env, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    base = median_ms(bare)
    print(f"single_run: {runs} runs each, warm local grid, {os.cpu_count()} cores")
    print(f"{'command':<34} {'median ms':>9} {'p90 ms':>9} {'vs bare':>8}")
    print(row(f"python3 hello.py ({Path(python).name})", bare, None))
    if boxed:
        print(row("bwrap … python hello.py", boxed, base))
    print(row("rgrid run hello.py", rgrid, base))
    print(row("rgrid run hello.py, 2,000-file tree", in_tree, base))
    print(row("rgrid --help", helps, None))
    tree_extra = median_ms(in_tree) - median_ms(rgrid)
    print(f"\n2,000-file tree (20 MB) over an empty project: {tree_extra:+.0f} ms (goal <= 20 ms)")
    overhead = median_ms(rgrid) - base
    print(
        f"\nrgrid overhead over bare python: {overhead:.0f} ms (goal <= 300 ms); "
        f"ratio {median_ms(rgrid) / base:.1f}x"
    )
    print(f"rgrid --help: {median_ms(helps):.0f} ms (goal <= 200 ms)")
    print(f"grid idle RSS: {idle:.0f} MiB (goal <= 150 MiB)")


if __name__ == "__main__":
    main()
