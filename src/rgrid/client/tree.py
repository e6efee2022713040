"""The project tree that travels with a run (SPEC §4.1): the current directory's directories and
files, minus what never helps a script and what ``.rgridignore`` excludes.

Never walked: ``.git`` (and other VCS stores), rgrid's own ``.rgrid``, ``node_modules``, tool
caches (``__pycache__``, ``.mypy_cache`` …, and any directory holding a ``CACHEDIR.TAG``) and
environments (a directory holding ``pyvenv.cfg`` or ``conda-meta``). Symlinks, sockets and other
special files are not sent. ``.gitignore`` is deliberately not read: the data a script reads is
often git-ignored.
"""

from __future__ import annotations

import operator
import os
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from rgrid import errors

if TYPE_CHECKING:
    import pathspec

IGNORE_FILE = ".rgridignore"
SKIP_NAMES = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".rgrid",
        "node_modules",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".hypothesis",
        ".ipynb_checkpoints",
        ".tox",
        ".nox",
    }
)
#: a directory holding one of these is an environment or a cache (cachedir tagging convention)
SKIP_MARKERS = frozenset({"pyvenv.cfg", "conda-meta", "CACHEDIR.TAG"})

BUDGET_BYTES = 100 * 1024**2
BUDGET_FILES = 10_000
#: over the budget, tree files bigger than this stay behind unless named or included
BIG_FILE_BYTES = 1024**2
BUDGET_BYTES_ENV = "RGRID_TREE_BUDGET"
BUDGET_FILES_ENV = "RGRID_TREE_BUDGET_FILES"

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?)?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}
_UNITS |= {"ki": 1024, "mi": 1024**2, "gi": 1024**3, "ti": 1024**4}


# named tuples, not dataclasses: a run's start would import ``dataclasses`` (and ``inspect``)
# and make each class's methods
class Budget(NamedTuple):
    """Above ``max_bytes`` or ``max_files`` in all, files over ``big_file_bytes`` stay behind."""

    max_bytes: int = BUDGET_BYTES
    max_files: int = BUDGET_FILES
    big_file_bytes: int = BIG_FILE_BYTES


class TreeFile(NamedTuple):
    """(A named tuple and plain strings: a tree has thousands of these, made on every run.)"""

    rel: str  # POSIX path relative to the root
    path: str  # absolute
    info: os.stat_result


class Tree(NamedTuple):
    files: list[TreeFile]
    #: every directory walked (relative POSIX paths), parents before children
    dirs: list[str]
    #: files that could not be read (not sent)
    unreadable: int = 0


def parse_size(value: object, what: str) -> int:
    """``104857600``, ``100MiB``, ``1.5G`` → bytes; a UsageError naming ``what`` otherwise."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _SIZE.match(str(value)) if isinstance(value, str) else None
    if match is None:
        raise errors.UsageError(f"{what}: {value!r} is not a size like 100MiB or 2GiB")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "").lower()])


def budget_from(project: Mapping[str, object], environ: Mapping[str, str]) -> Budget:
    """The budget: ``RGRID_TREE_BUDGET``/``RGRID_TREE_BUDGET_FILES``, else ``tree_budget`` /
    ``tree_budget_files`` in ``.rgrid/config.toml``, else 100 MiB / 10,000 files."""
    size = environ.get(BUDGET_BYTES_ENV) or project.get("tree_budget", BUDGET_BYTES)
    count = environ.get(BUDGET_FILES_ENV) or project.get("tree_budget_files", BUDGET_FILES)
    try:
        files = int(count)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        files = -1
    if files < 0:
        raise errors.UsageError(f"tree_budget_files: {count!r} is not a number of files")
    return Budget(max_bytes=parse_size(size, "tree_budget"), max_files=files)


def load_ignore(root: Path) -> pathspec.GitIgnoreSpec | None:
    """The root's ``.rgridignore`` (gitignore syntax), or None when it has none."""
    try:
        text = (root / IGNORE_FILE).read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise errors.UsageError(f"cannot read {root / IGNORE_FILE}: {exc.strerror}") from exc
    import pathspec  # only for a project that has one: it costs tens of ms to import

    return pathspec.GitIgnoreSpec.from_lines(text.splitlines())


def walk(root: Path, exclude: Collection[str] = ()) -> Tree:
    """The tree under ``root`` (absolute), without the relative paths in ``exclude``. (It runs
    on every ``rgrid run`` over every file of the project: kept to a ``stat`` a file and little
    else.)"""
    ignore = load_ignore(root)
    files: list[TreeFile] = []
    add = files.append
    dirs: list[str] = []
    unreadable = 0
    pending: list[tuple[str, str]] = [(str(root), "")]
    while pending:
        folder, rel_dir = pending.pop()
        try:
            with os.scandir(folder) as found:
                entries = sorted(found, key=_name)
        except OSError:
            unreadable += 1
            continue
        if rel_dir:
            if not SKIP_MARKERS.isdisjoint([e.name for e in entries]):
                continue  # an environment or a cache: not even its directory travels
            dirs.append(rel_dir)
        prefix = rel_dir + "/" if rel_dir else ""
        subdirs = []
        for entry in entries:
            if entry.is_file(follow_symlinks=False):  # most entries: tested first
                rel = prefix + entry.name
                if (exclude and rel in exclude) or (ignore and ignore.match_file(rel)):
                    continue
                try:
                    add(TreeFile(rel, entry.path, entry.stat(follow_symlinks=False)))
                except OSError:
                    unreadable += 1
            elif entry.is_dir(follow_symlinks=False):
                rel = prefix + entry.name
                if entry.name not in SKIP_NAMES and not (ignore and ignore.match_file(rel + "/")):
                    subdirs.append((entry.path, rel))
        pending.extend(reversed(subdirs))  # depth first, in name order: parents come first
    return Tree(files=files, dirs=dirs, unreadable=unreadable)


_name = operator.attrgetter("name")
