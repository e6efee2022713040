"""What ``rgrid run`` sends: the script, the local modules it imports, file arguments,
``--include`` paths (the *named* files), and the project tree (``client.tree``).

Arguments are never rewritten (SPEC §4.2): the grid mounts the execution's tree at this
machine's working directory, so a path inside it keeps its relative place, and a file or directory
named outside it is sent under its absolute path and mounted at that same place (its directory,
a "mount root"). A named outside path that does not exist yet, but whose directory does, is an
output target: its directory is mounted (empty) so that what the script writes there comes back.
"""

from __future__ import annotations

import ast
import functools
import os
import stat
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from rgrid import errors
from rgrid.client import tree as project_tree
from rgrid.client.hashcache import UNREADABLE_HINT, HashCache, digest_file
from rgrid.paths import check_mount_root

SKIP_DIRS = frozenset({"__pycache__", ".git", ".venv", "venv", ".mypy_cache", ".pytest_cache"})


class LocalFile(NamedTuple):
    """A file to send (a named tuple: a project tree has thousands, made on every run)."""

    rel: str  # relative to the working directory, or absolute (outside it)
    #: where it is on this machine (a str for the project tree's files)
    source: Path | str
    digest: str
    size: int
    #: part of the project tree (named by no argument, not the script or a module of it)
    tree: bool = False


# not dataclasses: a run's start would import ``dataclasses`` (and ``inspect``) and make each
# class's methods
class TreeReport(NamedTuple):
    """What the project tree walk found besides the files it sends."""

    #: tree files over the budget's size bound that stay behind, and their bytes
    left_behind: int = 0
    left_behind_bytes: int = 0
    budget: project_tree.Budget | None = None
    unreadable: int = 0
    #: files hashed (read), and files whose hash came from the hash cache
    hashed: int = 0
    hash_hits: int = 0


class Bundle:
    """What a run sends: its script, arguments and files, and where they go on the grid."""

    def __init__(
        self,
        *,
        script: str,
        args: list[str],
        files: list[LocalFile],
        cwd: str = "",
        argv0: str = "",
        mount_roots: list[str] | None = None,
        named_outside: list[str] | None = None,
        modules: list[Path] | None = None,
        batch_files: list[LocalFile] | None = None,
        dirs: list[str] | None = None,
        tree_report: TreeReport | None = None,
    ) -> None:
        self.script = script
        self.args = args
        self.files = files
        #: this machine's working directory, where the grid mounts the execution's tree
        self.cwd = cwd
        #: the script as typed (``sys.argv[0]``)
        self.argv0 = argv0
        #: directories outside ``cwd`` mounted at their own place
        self.mount_roots = mount_roots or []
        #: paths outside ``cwd`` named by arguments: what the script writes there comes back
        self.named_outside = named_outside or []
        #: the local modules found beside the script (their paths on this machine)
        self.modules = modules or []
        #: the batch inputs given to ``build_bundle``, placed like file arguments (same order)
        self.batch_files = batch_files or []
        #: directories to create that no file implies (empty, or holding only what stays behind)
        self.dirs = dirs or []
        self.tree_report = tree_report or TreeReport()

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @functools.cached_property
    def named_files(self) -> list[LocalFile]:
        """The files the run names (script, modules, arguments, ``--include``): its own."""
        return [f for f in self.files if not f.tree]

    @functools.cached_property
    def tree_files(self) -> list[LocalFile]:
        return [f for f in self.files if f.tree]

    @functools.cached_property
    def tree_digest(self) -> str | None:
        """The project tree's name on the grid (``digests.of_tree``); None: no tree."""
        if not self.dirs and not any(f.tree for f in self.files):
            return None
        from rgrid.digests import of_tree

        return of_tree(((f.rel, f.digest, f.size) for f in self.tree_files), self.dirs)


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
    """Gives each local path its place: relative inside the working directory, else absolute,
    and collects the directories outside it that the grid must mount (checked here, so a path
    that would cover the sandbox's system is refused before anything is sent)."""

    def __init__(self, cwd: Path) -> None:
        self._cwd = Path(os.path.abspath(cwd))
        self._roots: dict[str, None] = {}
        self.named: dict[str, None] = {}

    def place(self, path: Path, root: Path | None = None) -> str:
        """Where ``path`` goes; outside the working directory ``root`` (default: its directory)
        is mounted."""
        absolute = Path(os.path.abspath(path))
        if absolute.is_relative_to(self._cwd):
            return absolute.relative_to(self._cwd).as_posix()
        self.add_root(root if root is not None else absolute.parent)
        return absolute.as_posix()

    def add_root(self, directory: Path) -> None:
        try:
            check_mount_root(directory.as_posix())
        except errors.UnsafePath as exc:
            raise errors.UsageError(exc.message, hint=exc.hint) from exc
        self._roots[directory.as_posix()] = None

    def outside(self, path: Path) -> bool:
        return not Path(os.path.abspath(path)).is_relative_to(self._cwd)

    @property
    def roots(self) -> list[str]:
        """The mount roots, none inside another (that one is mounted with it)."""
        kept: list[str] = []
        for root in sorted(self._roots, key=lambda r: (r.count("/"), r)):
            if not any(PurePosixPath(root).is_relative_to(k) for k in kept):
                kept.append(root)
        return sorted(kept)


def _file_entry(
    placer: _Placer, path: Path, root: Path | None = None, hashes: HashCache | None = None
) -> LocalFile:
    _check_regular(path)
    rel = placer.place(path, root)
    info = path.stat()
    sha = hashes.digest(path, info) if hashes else digest_file(path)
    return LocalFile(rel=rel, source=path, digest=sha, size=info.st_size)


def _path_arg(arg: str) -> tuple[str, str] | None:
    """(prefix, path) if the argument names an existing path: ``x.csv`` or ``--in=x.csv``."""
    if arg and os.path.lexists(arg):
        return "", arg
    if arg.startswith("-") and "=" in arg:
        flag, _, value = arg.partition("=")
        if value and os.path.lexists(value):
            return flag + "=", value
    return None


def _add_path(
    placer: _Placer,
    files: dict[str, LocalFile],
    path: Path,
    hashes: HashCache,
    *,
    in_tree: bool = False,
    exclude: Collection[str] = (),
) -> None:
    """Add a named file or directory tree (outside the working directory: mounted, and what the
    script writes there comes back). ``in_tree``: what lies inside the working directory joins
    the project tree (``--include``: sent whatever the budget or ``.rgridignore`` say, but
    shared by run after run like the rest of the tree), but for the paths in ``exclude``
    (a batch's inputs: each item carries its own)."""
    if not path.exists():
        raise errors.UsageError(f"{path} is a broken symlink")
    directory = Path(os.path.abspath(path)) if path.is_dir() else None
    if placer.outside(path):
        placer.named[os.path.abspath(path)] = None
    for item in _tree_files(path) if path.is_dir() else [path]:
        entry = _file_entry(placer, item, directory, hashes)
        if in_tree and not entry.rel.startswith("/"):
            if entry.rel in exclude:
                continue
            entry = entry._replace(tree=True)
        files.setdefault(entry.rel, entry)
    if directory is not None and placer.outside(path):
        placer.add_root(directory)


def _output_target(placer: _Placer, value: str) -> None:
    """A path-like argument that does not exist yet but whose directory does, outside the
    working directory: mount that directory so the file the script writes comes back."""
    if "/" not in value:
        return
    absolute = Path(os.path.abspath(value))
    if placer.outside(absolute) and absolute.parent.is_dir():
        placer.add_root(absolute.parent)
        placer.named[absolute.as_posix()] = None


def build_bundle(
    script: Path,
    args: Iterable[str],
    includes: Iterable[Path],
    cwd: Path | None = None,
    batch_inputs: Iterable[Path] = (),
    argv0: str | None = None,
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
        entry = _file_entry(placer, module, root=script_base, hashes=hashes)
        files.setdefault(entry.rel, entry)
    args = list(args)
    for arg in args:
        named = _path_arg(arg)
        if named is not None:
            _add_path(placer, files, Path(named[1]), hashes)
        elif arg:
            _output_target(placer, arg.partition("=")[2] if arg.startswith("-") else arg)
    placed = [_file_entry(placer, path, hashes=hashes) for path in batch_inputs]
    exclude = {f.rel for f in placed}
    for include in includes:
        if not include.exists():
            raise errors.UsageError(f"--include path not found: {include}")
        _add_path(placer, files, include, hashes, in_tree=True, exclude=exclude)
    dirs: list[str] = []
    report = TreeReport()
    if budget is not None:
        dirs, report = _add_tree(Path(os.path.abspath(cwd)), files, exclude, budget, hashes)
    report = report._replace(hashed=hashes.hashed, hash_hits=hashes.hits)
    return Bundle(
        script=script_entry.rel,
        args=args,
        files=list(files.values()),
        modules=modules,
        batch_files=placed,
        cwd=Path(os.path.abspath(cwd)).as_posix(),
        argv0=argv0 if argv0 is not None else str(script),
        mount_roots=placer.roots,
        named_outside=sorted(placer.named),
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
    known = hashes.known
    for rel, path, info in found.files:
        if rel in files:
            continue
        if over and info.st_size > budget.big_file_bytes:
            left, left_bytes = left + 1, left_bytes + info.st_size
            continue
        sha = known(path, info)
        if sha is None:
            try:
                sha = hashes.digest(path, info)
            except errors.UsageError:
                unreadable += 1
                continue
        files[rel] = LocalFile(rel, path, sha, info.st_size, True)
    report = TreeReport(left, left_bytes, budget if over else None, unreadable)
    return _uncovered(found.dirs, files), report


def _uncovered(dirs: list[str], files: dict[str, LocalFile]) -> list[str]:
    """The directories (deepest first) that creating the files' parents would not create."""
    covered: set[str] = set()
    for rel in files:
        _add_parents(covered, rel)
    needed = []
    for rel in sorted(dirs, key=lambda d: d.count("/"), reverse=True):
        if rel not in covered:
            needed.append(rel)
            _add_parents(covered, rel + "/")
    return sorted(needed)


def _add_parents(found: set[str], rel: str) -> None:
    """Add the parent directories of relative POSIX path ``rel`` (string operations: this
    runs for every file of the tree)."""
    cut = rel.rfind("/")
    while cut > 0 and (parent := rel[:cut]) not in found:
        found.add(parent)
        cut = parent.rfind("/")


def project_bundle(
    script: Path,
    args: Iterable[str],
    includes: Iterable[Path],
    batch_inputs: Iterable[Path] = (),
    project: dict[str, object] | None = None,
    argv0: str | None = None,
) -> Bundle:
    """``build_bundle`` with the project tree of the current directory, under the budget of
    ``project`` (its ``.rgrid/config.toml`` settings) and the environment, hashed through the
    user's hash cache (which is saved)."""
    from rgrid.client.hashcache import default_location

    cwd = Path(os.path.abspath(Path.cwd()))
    budget = project_tree.budget_from(project or {}, os.environ)
    hashes = HashCache(default_location(cwd))
    bundle = build_bundle(
        script, args, includes, cwd, batch_inputs, argv0, budget=budget, hashes=hashes
    )
    hashes.save()
    return bundle


def place_files(paths: Iterable[Path], cwd: Path | None = None) -> list[LocalFile]:
    """Hash files and give each its place in a work directory, as ``build_bundle`` would."""
    placer = _Placer(cwd or Path.cwd())
    return [_file_entry(placer, path) for path in paths]
