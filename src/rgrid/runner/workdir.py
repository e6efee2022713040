"""The work directory of one execution: materialise inputs, then find what the run produced."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

from rgrid import domain
from rgrid.paths import join_under

SKIP_DIRS = frozenset({"__pycache__"})
HASH_CHUNK = 1024 * 1024


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def input_path(workdir: Path, ref: domain.FileRef) -> Path:
    """Where an input goes; refuses unsafe paths (``errors.UnsafePath``)."""
    return join_under(workdir, ref.path)


def _regular_files(workdir: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Every regular file under ``workdir`` (never following symlinks), relative POSIX paths."""
    for dirpath, dirnames, filenames in os.walk(workdir, followlinks=False):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for name in filenames:
            full = Path(dirpath) / name
            info = full.lstat()
            if stat.S_ISREG(info.st_mode):
                yield full.relative_to(workdir).as_posix(), info


@dataclasses.dataclass(frozen=True)
class OutputScan:
    files: list[tuple[str, Path]]
    #: files left out because a limit was reached
    dropped: int
    over_limit: bool


def find_outputs(
    workdir: Path, inputs: Mapping[str, domain.FileRef], *, max_bytes: int, max_files: int
) -> OutputScan:
    """Files created or modified by the run (unchanged inputs excluded), within the limits."""
    chosen: list[tuple[str, Path]] = []
    total = dropped = 0
    for rel, info in sorted(_regular_files(workdir)):
        full = workdir / rel
        given = inputs.get(rel)
        if given is not None and given.size == info.st_size and sha256_file(full) == given.sha256:
            continue
        if len(chosen) >= max_files or total + info.st_size > max_bytes:
            dropped += 1
            continue
        chosen.append((rel, full))
        total += info.st_size
    return OutputScan(files=chosen, dropped=dropped, over_limit=dropped > 0)
