"""Plain ``python`` and ``rgrid run`` side by side: the same command in identical fresh copies of a
project at the same path, compared as a user would (exit code, stdout, stderr without rgrid's own
``rgrid:`` lines, every file created or changed, empty directories included)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.conftest import RGRID_BIN

#: the interpreter behind the tests (not a shim)
PYTHON = os.path.realpath(
    subprocess.run(
        ["python3", "-c", "import sys; print(sys.executable)"], capture_output=True, text=True
    ).stdout.strip()
)


@dataclasses.dataclass(frozen=True)
class Outcome:
    code: int
    stdout: bytes
    stderr: bytes
    files: dict[str, tuple[int, str]]


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every file (size, sha256) and empty directory under ``root``, by relative path."""
    found: dict[str, tuple[int, str]] = {}
    if not root.exists():
        return found
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            path = Path(dirpath) / name
            if not any(path.iterdir()):
                found[f"{path.relative_to(root)}/"] = (0, "empty directory")
        for name in filenames:
            data = (Path(dirpath) / name).read_bytes()
            found[str((Path(dirpath) / name).relative_to(root))] = (
                len(data),
                hashlib.sha256(data).hexdigest(),
            )
    return found


def _watched(path: Path) -> dict[str, tuple[int, str]]:
    if path.is_dir():
        return {f"{path}/{rel}": value for rel, value in snapshot(path).items()}
    if path.is_file():
        data = path.read_bytes()
        return {str(path): (len(data), hashlib.sha256(data).hexdigest())}
    return {}


def _without_rgrid_lines(stderr: bytes) -> bytes:
    return b"".join(
        line for line in stderr.splitlines(keepends=True) if not line.startswith(b"rgrid: ")
    )


def compare(
    template: Path,
    place: Path,
    argv: Sequence[str],
    env: dict[str, str],
    *,
    cwd: str = ".",
    watched: Sequence[Path] = (),
    rgrid_options: Sequence[str] = ("--no-cache",),
    stdin: bytes | None = None,
) -> tuple[Outcome, Outcome]:
    """Run ``python argv`` and ``rgrid run argv`` in fresh copies of ``template`` at ``place``
    (``cwd`` inside it); ``watched`` are paths outside ``place`` the command may write (removed
    before each run, snapshotted after). Returns (python, rgrid)."""
    outcomes = []
    for command in ([PYTHON, *argv], [str(RGRID_BIN), "run", *rgrid_options, *argv]):
        shutil.rmtree(place, ignore_errors=True)
        shutil.copytree(template, place, symlinks=True)
        for path in watched:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        done = subprocess.run(
            command, cwd=place / cwd, env=env, capture_output=True, timeout=300, input=stdin
        )
        files = snapshot(place)
        for path in watched:
            files.update(_watched(path))
        stderr = _without_rgrid_lines(done.stderr)
        outcomes.append(Outcome(done.returncode, done.stdout, stderr, files))
    return outcomes[0], outcomes[1]
