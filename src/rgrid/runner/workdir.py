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
#: characters: the longest output path the grid records (its database column)
MAX_OUTPUT_PATH = 4096


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def input_path(workdir: Path, ref: domain.FileRef) -> Path:
    """Where an input goes; refuses unsafe paths (``errors.UnsafePath``)."""
    return join_under(workdir, ref.path)


def _regular_files(
    workdir: Path, skip_top: frozenset[str] = frozenset()
) -> Iterator[tuple[str, os.stat_result]]:
    """Every regular file under ``workdir`` (never following symlinks), relative POSIX paths;
    ``skip_top``: directories of ``workdir`` itself left out."""
    for dirpath, dirnames, filenames in os.walk(workdir, followlinks=False):
        top = Path(dirpath) == workdir
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not (top and d in skip_top)]
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
    #: files left out because the grid cannot name them: (the name, readably escaped, why)
    refused: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def name_problem(rel: str) -> str | None:
    """Why an output path cannot be recorded, or None. A POSIX file name is any bytes but
    ``/`` and NUL; the grid's names are text, so a name that is not valid UTF-8 (it arrives
    here with surrogate escapes) is refused rather than recorded under a made-up spelling."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return "its name is not valid UTF-8"
    if len(rel) > MAX_OUTPUT_PATH:
        return f"its path is longer than {MAX_OUTPUT_PATH} characters"
    return None


def readable_name(rel: str) -> str:
    """A name as text that can be shown and logged: undecodable bytes as ``\\xNN``."""
    return os.fsencode(rel).decode("utf-8", "backslashreplace")


def find_outputs(
    workdir: Path,
    inputs: Mapping[str, domain.FileRef],
    *,
    max_bytes: int,
    max_files: int,
    skip_top: frozenset[str] = frozenset(),
) -> OutputScan:
    """Files created or modified by the run (unchanged inputs excluded), within the limits."""
    chosen: list[tuple[str, Path]] = []
    refused: list[tuple[str, str]] = []
    total = dropped = 0
    for rel, info in sorted(_regular_files(workdir, skip_top)):
        problem = name_problem(rel)
        if problem is not None:
            refused.append((readable_name(rel), problem))
            continue
        full = workdir / rel
        given = inputs.get(rel)
        if given is not None and given.size == info.st_size and sha256_file(full) == given.sha256:
            continue
        if len(chosen) >= max_files or total + info.st_size > max_bytes:
            dropped += 1
            continue
        chosen.append((rel, full))
        total += info.st_size
    return OutputScan(files=chosen, dropped=dropped, over_limit=dropped > 0, refused=refused)
