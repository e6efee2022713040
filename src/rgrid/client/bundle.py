"""What ``rgrid run`` sends: the script, the local modules it imports, and file arguments.

Paths inside the current directory keep their relative path in the work directory; anything else
goes under ``_inputs/`` and the argument naming it is rewritten (SPEC §4.2).
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from rgrid import errors

OUTSIDE_DIR = "_inputs"
SKIP_DIRS = frozenset({"__pycache__", ".git", ".venv", "venv", ".mypy_cache", ".pytest_cache"})
HASH_CHUNK = 1024 * 1024
UNREADABLE_HINT = "rgrid uploads file arguments: make the file readable, or pass another one"


@dataclasses.dataclass(frozen=True)
class LocalFile:
    rel: str  # path in the work directory
    source: Path  # where it is on this machine
    sha256: str
    size: int


@dataclasses.dataclass(frozen=True)
class Bundle:
    script: str
    args: list[str]
    files: list[LocalFile]
    #: the local modules found beside the script (their paths on this machine)
    modules: list[Path] = dataclasses.field(default_factory=list)
    #: the batch inputs given to ``build_bundle``, placed like file arguments (same order)
    batch_files: list[LocalFile] = dataclasses.field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(HASH_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise errors.UsageError(
            f"cannot read {path}: {exc.strerror or exc}", hint=UNREADABLE_HINT
        ) from exc
    return digest.hexdigest()


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


def _file_entry(placer: _Placer, path: Path, outside_base: Path | None = None) -> LocalFile:
    _check_regular(path)
    rel = placer.place(path, outside_base)
    return LocalFile(rel=rel, source=path, sha256=sha256_file(path), size=path.stat().st_size)


def _path_arg(arg: str) -> tuple[str, str] | None:
    """(prefix, path) if the argument names an existing path: ``x.csv`` or ``--in=x.csv``."""
    if arg and os.path.lexists(arg):
        return "", arg
    if arg.startswith("-") and "=" in arg:
        flag, _, value = arg.partition("=")
        if value and os.path.lexists(value):
            return flag + "=", value
    return None


def _add_path(placer: _Placer, files: dict[str, LocalFile], path: Path) -> str:
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
            entry = _file_entry(placer, item)
            files.setdefault(entry.rel, entry)
        return rel_dir
    entry = _file_entry(placer, path)
    files.setdefault(entry.rel, entry)
    return entry.rel


def build_bundle(
    script: Path,
    args: Iterable[str],
    includes: Iterable[Path],
    cwd: Path | None = None,
    batch_inputs: Iterable[Path] = (),
) -> Bundle:
    """Collect and hash everything a run needs. Raises ``UsageError`` for unusable paths."""
    cwd = cwd or Path.cwd()
    if not script.exists():
        raise errors.UsageError(
            f"script not found: {script}",
            hint=f"check the path; it is relative to the current directory ({cwd})",
        )
    placer = _Placer(cwd)
    files: dict[str, LocalFile] = {}
    script_entry = _file_entry(placer, script)
    files[script_entry.rel] = script_entry
    script_base = Path(os.path.abspath(script)).parent
    modules = local_modules(script)
    for module in modules:
        entry = _file_entry(placer, module, outside_base=script_base)
        files.setdefault(entry.rel, entry)
    new_args: list[str] = []
    for arg in args:
        named = _path_arg(arg)
        if named is None:
            new_args.append(arg)
            continue
        prefix, value = named
        new_args.append(prefix + _add_path(placer, files, Path(value)))
    for include in includes:
        if not include.exists():
            raise errors.UsageError(f"--include path not found: {include}")
        _add_path(placer, files, include)
    placed = [_file_entry(placer, path) for path in batch_inputs]
    return Bundle(
        script=script_entry.rel,
        args=new_args,
        files=list(files.values()),
        modules=modules,
        batch_files=placed,
    )


def place_files(paths: Iterable[Path], cwd: Path | None = None) -> list[LocalFile]:
    """Hash files and give each its place in a work directory, as ``build_bundle`` would."""
    placer = _Placer(cwd or Path.cwd())
    return [_file_entry(placer, path) for path in paths]
