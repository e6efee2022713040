"""What ``rgrid run`` sends: the script, the local modules it imports, file arguments,
``--include`` paths (the *named* files), and the project tree (``client.tree``).

Paths inside the current directory keep their relative path in the work directory; anything else
goes under ``_inputs/`` and the argument naming it is rewritten (SPEC §4.2).
"""

from __future__ import annotations

import ast
import dataclasses
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from rgrid import errors
from rgrid.client import tree as project_tree
from rgrid.client.hashcache import UNREADABLE_HINT, HashCache, sha256_file

OUTSIDE_DIR = "_inputs"
SKIP_DIRS = frozenset({"__pycache__", ".git", ".venv", "venv", ".mypy_cache", ".pytest_cache"})


@dataclasses.dataclass(frozen=True)
class LocalFile:
    rel: str  # path in the work directory
    source: Path  # where it is on this machine
    sha256: str
    size: int
    #: only part of the project tree: named by nothing (not in the result-cache key, SPEC §12)
    tree: bool = False


@dataclasses.dataclass(frozen=True)
class TreeReport:
    """What the project tree walk found besides the files it sends."""

    #: tree files over the budget's size bound that stay behind, and their bytes
    left_behind: int = 0
    left_behind_bytes: int = 0
    budget: project_tree.Budget | None = None
    unreadable: int = 0
    #: files hashed (read), and files whose hash came from the hash cache
    hashed: int = 0
    hash_hits: int = 0


@dataclasses.dataclass(frozen=True)
class Bundle:
    script: str
    args: list[str]
    files: list[LocalFile]
    #: the local modules found beside the script (their paths on this machine)
    modules: list[Path] = dataclasses.field(default_factory=list)
    #: the batch inputs given to ``build_bundle``, placed like file arguments (same order)
    batch_files: list[LocalFile] = dataclasses.field(default_factory=list)
    #: directories to create that no file implies (empty ones, or holding only what stays behind)
    dirs: list[str] = dataclasses.field(default_factory=list)
    tree_report: TreeReport = dataclasses.field(default_factory=TreeReport)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def _check_regular(path: Path) -> None:
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise errors.UsageError(
            f"{path} is not a regular file (a pipe, socket or device)",
            hint="rgrid uploads file arguments: save the data to a regular file and pass that",
        )
    if not os.access(path, os.R_OK):
        raise errors.UsageError(f"cannot read {path}: permission denied", hint=UNREADABLE_HINT)


def _imported_names(source: Path) -> set[str]:
    """Top-level names imported by a module, plus relative imports resolved to siblings."""
    try:
        tree = ast.parse(source.read_bytes(), filename=str(source))
    except (SyntaxError, ValueError):
        return set()  # the grid will report the syntax error as the script's own
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
            elif node.level > 0:
                names.update(alias.name for alias in node.names)
                if node.module:
                    names.add(node.module.split(".")[0])
    return names


def _tree_files(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                yield path


def local_modules(script: Path) -> list[Path]:
    """Sibling ``.py`` files and packages the script imports, recursively (files, not dirs)."""
    base = script.parent
    found: dict[Path, None] = {}
    pending = [script]
    seen: set[Path] = {script.resolve()}
    while pending:
        current = pending.pop()
        for name in sorted(_imported_names(current)):
            module, package = base / f"{name}.py", base / name
            if module.is_file():
                targets = [module]
            elif package.is_dir() and any(package.glob("*.py")):
                targets = list(_tree_files(package))
            else:
                continue
            for target in targets:
                if target.resolve() in seen:
                    continue
                seen.add(target.resolve())
                found[target] = None
                if target.suffix == ".py":
                    pending.append(target)
    return list(found)


class _Placer:
    """Chooses each local path's place in the work directory, once per file."""

    def __init__(self, cwd: Path) -> None:
        self._cwd = cwd.resolve()
        self._placed: dict[Path, str] = {}
        self._taken: set[str] = set()

    def place(self, path: Path, outside_base: Path | None = None) -> str:
        resolved = path.resolve()
        if resolved in self._placed:
            return self._placed[resolved]
        absolute = Path(os.path.abspath(path))
        if absolute.is_relative_to(self._cwd):
            rel = absolute.relative_to(self._cwd).as_posix()
        else:
            tail = absolute.relative_to(outside_base) if outside_base else Path(absolute.name)
            rel = self._free(PurePosixPath(OUTSIDE_DIR, tail.as_posix()))
        self._placed[resolved] = rel
        self._taken.add(rel)
        return rel

    def _free(self, wanted: PurePosixPath) -> str:
        candidate, n = wanted.as_posix(), 2
        while candidate in self._taken:
            candidate = PurePosixPath(OUTSIDE_DIR, str(n), *wanted.parts[1:]).as_posix()
            n += 1
        return candidate


def _file_entry(
    placer: _Placer, path: Path, outside_base: Path | None = None, hashes: HashCache | None = None
) -> LocalFile:
    _check_regular(path)
    rel = placer.place(path, outside_base)
    info = path.stat()
    sha = hashes.sha256(path, info) if hashes else sha256_file(path)
    return LocalFile(rel=rel, source=path, sha256=sha, size=info.st_size)


def _path_arg(arg: str) -> tuple[str, str] | None:
    """(prefix, path) if the argument names an existing path: ``x.csv`` or ``--in=x.csv``."""
    if arg and os.path.lexists(arg):
        return "", arg
    if arg.startswith("-") and "=" in arg:
        flag, _, value = arg.partition("=")
        if value and os.path.lexists(value):
            return flag + "=", value
    return None


def _add_path(placer: _Placer, files: dict[str, LocalFile], path: Path, hashes: HashCache) -> str:
    """Add a file or a directory tree; returns its place in the work directory."""
    if not path.exists():
        raise errors.UsageError(f"{path} is a broken symlink")
    if path.is_dir():
        rel_dir = placer.place(path)
        outside = rel_dir.startswith(OUTSIDE_DIR + "/")
        for item in _tree_files(path):
            rel = (PurePosixPath(rel_dir) / item.relative_to(path).as_posix()).as_posix()
            if outside:
                placer._placed[item.resolve()] = rel  # keep the tree together under its new root
            entry = _file_entry(placer, item, hashes=hashes)
            files.setdefault(entry.rel, entry)
        return rel_dir
    entry = _file_entry(placer, path, hashes=hashes)
    files.setdefault(entry.rel, entry)
    return entry.rel


def build_bundle(
    script: Path,
    args: Iterable[str],
    includes: Iterable[Path],
    cwd: Path | None = None,
    batch_inputs: Iterable[Path] = (),
    *,
    budget: project_tree.Budget | None = None,
    hashes: HashCache | None = None,
) -> Bundle:
    """Collect and hash everything a run needs; with a ``budget``, the project tree (the
    current directory's) too, batch inputs excepted. Raises ``UsageError`` for unusable paths.
    ``hashes``: where known hashes are looked up (default: none, every file is read)."""
    cwd = cwd or Path.cwd()
    hashes = hashes or HashCache(None)
    if not script.exists():
        raise errors.UsageError(
            f"script not found: {script}",
            hint=f"check the path; it is relative to the current directory ({cwd})",
        )
    placer = _Placer(cwd)
    files: dict[str, LocalFile] = {}
    script_entry = _file_entry(placer, script, hashes=hashes)
    files[script_entry.rel] = script_entry
    script_base = Path(os.path.abspath(script)).parent
    modules = local_modules(script)
    for module in modules:
        entry = _file_entry(placer, module, outside_base=script_base, hashes=hashes)
        files.setdefault(entry.rel, entry)
    new_args: list[str] = []
    for arg in args:
        named = _path_arg(arg)
        if named is None:
            new_args.append(arg)
            continue
        prefix, value = named
        new_args.append(prefix + _add_path(placer, files, Path(value), hashes))
    for include in includes:
        if not include.exists():
            raise errors.UsageError(f"--include path not found: {include}")
        _add_path(placer, files, include, hashes)
    placed = [_file_entry(placer, path, hashes=hashes) for path in batch_inputs]
    dirs: list[str] = []
    report = TreeReport()
    if budget is not None:
        exclude = {f.rel for f in placed}
        dirs, report = _add_tree(Path(os.path.abspath(cwd)), files, exclude, budget, hashes)
    report = dataclasses.replace(report, hashed=hashes.hashed, hash_hits=hashes.hits)
    return Bundle(
        script=script_entry.rel,
        args=new_args,
        files=list(files.values()),
        modules=modules,
        batch_files=placed,
        dirs=dirs,
        tree_report=report,
    )


def _add_tree(
    root: Path,
    files: dict[str, LocalFile],
    exclude: set[str],
    budget: project_tree.Budget,
    hashes: HashCache,
) -> tuple[list[str], TreeReport]:
    """Add the tree's files that are not named already; returns the directories no sent file
    implies, and what stayed behind."""
    found = project_tree.walk(root, exclude)
    total = sum(f.info.st_size for f in found.files)
    over = total > budget.max_bytes or len(found.files) > budget.max_files
    left = left_bytes = 0
    unreadable = found.unreadable
    for item in found.files:
        if item.rel in files:
            continue
        if over and item.info.st_size > budget.big_file_bytes:
            left, left_bytes = left + 1, left_bytes + item.info.st_size
            continue
        try:
            sha = hashes.sha256(item.path, item.info)
        except errors.UsageError:
            unreadable += 1
            continue
        files[item.rel] = LocalFile(item.rel, item.path, sha, item.info.st_size, tree=True)
    report = TreeReport(left, left_bytes, budget if over else None, unreadable)
    return _uncovered(found.dirs, files), report


def _uncovered(dirs: list[str], files: dict[str, LocalFile]) -> list[str]:
    """The directories (deepest first) that creating the files' parents would not create."""
    covered: set[str] = set()
    for rel in files:
        covered.update(p.as_posix() for p in PurePosixPath(rel).parents)
    needed = []
    for rel in sorted(dirs, key=lambda d: d.count("/"), reverse=True):
        if rel not in covered:
            needed.append(rel)
            covered.update(p.as_posix() for p in PurePosixPath(rel).parents)
            covered.add(rel)
    return sorted(needed)


def project_bundle(
    script: Path,
    args: Iterable[str],
    includes: Iterable[Path],
    batch_inputs: Iterable[Path] = (),
    project: dict[str, object] | None = None,
) -> Bundle:
    """``build_bundle`` with the project tree of the current directory, under the budget of
    ``project`` (its ``.rgrid/config.toml`` settings) and the environment, hashed through the
    user's hash cache (which is saved)."""
    from rgrid.client.hashcache import default_location

    cwd = Path(os.path.abspath(Path.cwd()))
    budget = project_tree.budget_from(project or {}, os.environ)
    hashes = HashCache(default_location(cwd))
    bundle = build_bundle(script, args, includes, cwd, batch_inputs, budget=budget, hashes=hashes)
    hashes.save()
    return bundle


def place_files(paths: Iterable[Path], cwd: Path | None = None) -> list[LocalFile]:
    """Hash files and give each its place in a work directory, as ``build_bundle`` would."""
    placer = _Placer(cwd or Path.cwd())
    return [_file_entry(placer, path) for path in paths]
