"""The Python interpreters a worker offers (runtimes), found once and described exactly.

Candidates: the interpreter running the grid, ``RGRID_PYTHONS`` (paths, comma-separated), pyenv's
installed versions, and ``python3.X`` in the usual system directories. Each is asked for its real
executable, version and installation prefix; shims resolve to what they run.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import glob
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

MIN_VERSION = (3, 8)
PROBE = (
    "import json, sys; print(json.dumps([list(sys.version_info[:3]), sys.executable, "
    "sys.base_prefix, sys.implementation.name]))"
)
PROBE_TIMEOUT_S = 10.0


@dataclasses.dataclass(frozen=True)
class Interpreter:
    version: tuple[int, int, int]
    path: Path  # the real executable
    prefix: Path  # its installation, mounted read-only in the sandbox

    @property
    def minor(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"

    @property
    def full_version(self) -> str:
        return ".".join(map(str, self.version))

    @property
    def name(self) -> str:
        return f"python{self.minor}"


def real_interpreter() -> Path:
    """The real interpreter behind this process (never a shim, never a venv's symlink)."""
    return Path(getattr(sys, "_base_executable", None) or sys.executable).resolve()


def python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _candidates(extra: Iterable[str]) -> list[str]:
    found = [str(real_interpreter()), *extra]
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    found += sorted(glob.glob(os.path.join(pyenv_root, "versions", "*", "bin", "python3")))
    for directory in ("/usr/local/bin", "/usr/bin"):
        found += sorted(glob.glob(os.path.join(directory, "python3.[0-9]*")))
    return [path for path in dict.fromkeys(found) if not path.endswith("-config")]


def _probe(path: str) -> Interpreter | None:
    try:
        done = subprocess.run(
            [path, "-I", "-c", PROBE], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S
        )
        version, executable, prefix, implementation = json.loads(done.stdout)
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    if implementation != "cpython" or tuple(version[:2]) < MIN_VERSION:
        return None
    return Interpreter(
        (version[0], version[1], version[2]), Path(executable).resolve(), Path(prefix).resolve()
    )


def discover(extra: Iterable[str] = ()) -> list[Interpreter]:
    """One interpreter per minor version, newest patch first; the grid's own wins its version."""
    candidates = _candidates(extra)
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        probed = [i for i in pool.map(_probe, candidates) if i is not None]
    own = probed[0] if probed and candidates[0] == str(real_interpreter()) else None
    chosen: dict[str, Interpreter] = {}
    for interpreter in sorted(probed, key=lambda i: i.version, reverse=True):
        if interpreter.minor not in chosen or interpreter == own:
            chosen[interpreter.minor] = interpreter
    return sorted(chosen.values(), key=lambda i: i.version)
