"""bench/envs: building environments with rgrid's uv cache vs venv + pip, and reusing them.

For each spec: a cold build and a second one (a new environment; each build has a uv cache of its
own, so it downloads again: "warm" only measures the machine being warmed up), and
`python -m venv` + `pip install` (pip's cache off, so cold too); then the overhead of `rgrid run`
with an existing environment against a stdlib-only run. Usage: .venv/bin/python bench/envs.py
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rgrid.envs import pythons
from rgrid.envs.build import BuildConfig
from rgrid.envs.cache import EnvCache

SPECS = {"requests": ["requests"], "numpy pandas": ["numpy", "pandas"]}
RGRID = Path(sys.executable).parent / "rgrid"
BUILD = BuildConfig.from_environ(os.environ, None)


async def _quiet(_line: str) -> None:
    return None


def uv_build(root: Path, spec: list[str], interpreter: pythons.Interpreter) -> float:
    async def build() -> None:
        async with EnvCache(root, build_config=BUILD).environment(spec, interpreter, _quiet) as env:
            assert env.built_now

    start = time.perf_counter()
    asyncio.run(build())
    return time.perf_counter() - start


def pip_build(root: Path, spec: list[str], interpreter: pythons.Interpreter) -> float:
    start = time.perf_counter()
    subprocess.run([str(interpreter.path), "-m", "venv", str(root)], check=True)
    subprocess.run(
        [str(root / "bin" / "python"), "-m", "pip", "install", "-q", "--no-cache-dir", *spec],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def run_median(project: Path, script: str, env: dict[str, str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(
            [str(RGRID), "run", "--no-cache", script],
            cwd=project,
            env=env,
            check=True,
            capture_output=True,
        )
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def run_overhead(tmp: Path, runs: int = 15) -> tuple[float, float]:
    project = tmp / "project"
    project.mkdir()
    (project / "plain.py").write_text("print('hi')\n")
    (project / "withenv.py").write_text(
        "# /// script\n# dependencies = ['six']\n# ///\nprint('hi')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RGRID_")}
    env.update(RGRID_HOME=str(tmp / "home"), HOME=str(tmp / "user"))
    env.pop("UV_CACHE_DIR", None)
    try:
        for script in ("plain.py", "withenv.py"):  # warm: environments exist
            subprocess.run(
                [str(RGRID), "run", "--no-cache", script],
                cwd=project,
                env=env,
                check=True,
                capture_output=True,
            )
        return run_median(project, "plain.py", env, runs), run_median(
            project, "withenv.py", env, runs
        )
    finally:
        subprocess.run([str(RGRID), "server", "stop"], env=env, capture_output=True)


def main() -> None:
    interpreter = next(i for i in pythons.discover() if i.minor == pythons.python_version())
    tmp = Path(tempfile.mkdtemp(prefix="rgrid-bench-envs-"))
    print(f"envs: Python {interpreter.full_version}, {os.cpu_count()} cores")
    print(f"{'spec':<14} {'uv cold s':>10} {'uv 2nd s':>10} {'pip cold s':>11} {'pip/uv cold':>12}")
    try:
        for name, spec in SPECS.items():
            os.environ["UV_CACHE_DIR"] = str(tmp / f"uv-cache-{name.replace(' ', '-')}")
            cold = uv_build(tmp / f"cold-{len(spec)}", spec, interpreter)
            warm = uv_build(tmp / f"warm-{len(spec)}", spec, interpreter)
            pip = pip_build(tmp / f"pip-{len(spec)}", spec, interpreter)
            print(f"{name:<14} {cold:>10.2f} {warm:>10.2f} {pip:>11.2f} {pip / cold:>11.1f}x")
        os.environ.pop("UV_CACHE_DIR", None)
        plain, withenv = run_overhead(tmp)
        print(f"\nrgrid run, stdlib only:        {plain * 1000:7.1f} ms (median)")
        print(f"rgrid run, existing env (six): {withenv * 1000:7.1f} ms (median)")
        print(
            f"overhead of an existing environment: {(withenv - plain) * 1000:+.1f} ms (goal <= 50 ms)"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
