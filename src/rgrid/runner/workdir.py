"""The work directory of one execution: materialise inputs, then find what the run produced.

An input is unchanged when its (size, mtime, inode) are those recorded when it was put in place
(a ``Stamp``): a write changes the mtime, a replacement the inode, so the tree's files, most of
them untouched, are not read again. Anything else is compared by content.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Collection, Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath

from rgrid import digests, domain
from rgrid.paths import join_under

SKIP_DIRS = frozenset({"__pycache__"})
#: characters: the longest output path the grid records (its database column)
MAX_OUTPUT_PATH = 4096


#: (size, mtime_ns, inode) of an input as it was put in place
Stamp = tuple[int, int, int]


def input_path(workdir: Path, ref: domain.FileRef) -> Path:
    """Where an input goes; refuses unsafe paths (``errors.UnsafePath``)."""
    return join_under(workdir, ref.path)


def stamp(info: os.stat_result) -> Stamp:
    return (info.st_size, info.st_mtime_ns, info.st_ino)


def stamps(placed: Iterable[tuple[str, Path]]) -> dict[str, Stamp]:
    """The stamp of each input put in place (relative path, where it is)."""
    return {rel: stamp(path.lstat()) for rel, path in placed}


def existing_dirs(inputs: Iterable[str], dirs: Iterable[str]) -> set[str]:
    """The directories a work directory holds before the run: those given and the inputs'."""
    found: set[str] = set()
    for rel in inputs:
        found.update(p.as_posix() for p in PurePosixPath(rel).parents)
    for rel in dirs:
        found.add(rel)
        found.update(p.as_posix() for p in PurePosixPath(rel).parents)
    found.discard(".")
    return found


def _walk(
    workdir: Path, dirs_found: list[str], skip_top: frozenset[str] = frozenset()
) -> Iterator[tuple[str, os.stat_result]]:
    """Every regular file under ``workdir`` (never following symlinks), relative POSIX paths;
    every directory is added to ``dirs_found``; ``skip_top``: directories of ``workdir``
    itself left out."""
    for dirpath, dirnames, filenames in os.walk(workdir, followlinks=False):
        top = Path(dirpath) == workdir
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not (top and d in skip_top)]
        base = Path(dirpath)
        # a symlink to a directory is listed among them: it is neither walked nor collected
        dirnames[:] = [d for d in dirnames if not (base / d).is_symlink()]
        dirs_found.extend((base / d).relative_to(workdir).as_posix() for d in dirnames)
        for name in filenames:
            full = base / name
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
    #: empty directories the run created (deepest only: creating them makes their parents)
    dirs: list[str] = dataclasses.field(default_factory=list)


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
    placed: Mapping[str, Stamp] | None = None,
    dirs_before: Collection[str] = (),
) -> OutputScan:
    """Files created or modified by the run (unchanged inputs excluded), within the limits,
    and the empty directories it created. ``placed``: the inputs' stamps when put in place
    (an input with the same stamp is unchanged, without reading it); ``dirs_before``: the
    directories there were (see ``existing_dirs``)."""
    chosen: list[tuple[str, Path]] = []
    refused: list[tuple[str, str]] = []
    total = dropped = 0
    placed = placed or {}
    walked: list[str] = []
    for rel, info in sorted(_walk(workdir, walked, skip_top)):
        problem = name_problem(rel)
        if problem is not None:
            refused.append((readable_name(rel), problem))
            continue
        full = workdir / rel
        given = inputs.get(rel)
        if given is not None and (
            placed.get(rel) == stamp(info)
            or (given.size == info.st_size and digests.file_matches(full, given.digest))
        ):
            continue
        if len(chosen) >= max_files or total + info.st_size > max_bytes:
            dropped += 1
            continue
        chosen.append((rel, full))
        total += info.st_size
    new_dirs = [d for d in walked if d not in dirs_before and name_problem(d) is None]
    return OutputScan(
        files=chosen,
        dropped=dropped,
        over_limit=dropped > 0,
        refused=refused,
        dirs=_empty_leaves(new_dirs, [rel for rel, _ in chosen]),
    )


def _empty_leaves(new_dirs: list[str], outputs: list[str]) -> list[str]:
    """The new directories that hold no output and no other new directory."""
    filled: set[str] = set()
    for rel in [*outputs, *new_dirs]:
        filled.update(p.as_posix() for p in PurePosixPath(rel).parents)
    return sorted(d for d in new_dirs if d not in filled)
