"""Relative paths that are safe to join under a directory (no zip-slip), used on both sides."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from rgrid import errors

#: a backslash is an ordinary character of a POSIX name, but a separator on Windows
_BACKSLASH_SEPARATES = "\\" in (os.sep, os.altsep)


def safe_relpath(path: str) -> PurePosixPath:
    """``path`` as a normalised relative POSIX path, or ``errors.UnsafePath``.

    Refused: empty, absolute, ``..`` parts, NUL, ``.`` only; backslashes where they separate
    paths (Windows). Anything else, newlines included, is a legal POSIX name.
    """
    if not path or "\x00" in path or path.startswith("/"):
        raise errors.UnsafePath(f"unsafe path {path!r}")
    if _BACKSLASH_SEPARATES and "\\" in path:
        raise errors.UnsafePath(f"unsafe path {path!r}")
    pure = PurePosixPath(path)
    parts = pure.parts
    if not parts or any(part in ("..", "") for part in parts) or parts == (".",):
        raise errors.UnsafePath(f"unsafe path {path!r}")
    return PurePosixPath(*[p for p in parts if p != "."])


def join_under(root: Path, path: str) -> Path:
    """``root / path`` after checking ``path`` with ``safe_relpath``."""
    return root.joinpath(*safe_relpath(path).parts)


#: where the sandbox keeps its own system; a path outside the working directory is mounted at
#: its own place, which must neither be nor hold nor lie inside one of these
SYSTEM_DIRS = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/opt/rgrid",
    "/proc",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
)


def safe_abspath(path: str) -> PurePosixPath:
    """``path`` as a normalised absolute POSIX path, or ``errors.UnsafePath``: absolute, no
    ``.`` or ``..`` parts, no empty parts, no NUL, not ``/`` itself."""
    if not path.startswith("/") or "\x00" in path or path == "/":
        raise errors.UnsafePath(f"unsafe path {path!r}")
    pure = PurePosixPath(path)
    if any(part in (".", "..") for part in path.split("/")[1:]) or str(pure) != path.rstrip("/"):
        raise errors.UnsafePath(f"unsafe path {path!r}")
    return pure


def covers_system(path: PurePosixPath) -> str | None:
    """The system directory a mount at ``path`` would cover (or hide), or None."""
    for system in SYSTEM_DIRS:
        inside = PurePosixPath(system)
        if path == inside or path.is_relative_to(inside) or inside.is_relative_to(path):
            return system
    return None


def check_mount_root(path: str) -> PurePosixPath:
    """A directory outside the working directory that a run may have mounted at its own place:
    ``safe_abspath``, not covering a system directory (``errors.UnsafePath`` naming it)."""
    pure = safe_abspath(path)
    system = covers_system(pure)
    if system is not None:
        raise errors.UnsafePath(
            f"{path} would cover the sandbox's {system}",
            hint="copy the file into the project directory and name it there",
        )
    return pure


def safe_input_path(path: str) -> PurePosixPath:
    """A file's place: relative to the working directory (``safe_relpath``), or absolute for a
    file named outside it (``safe_abspath``)."""
    return safe_abspath(path) if path.startswith("/") else safe_relpath(path)


def output_target(dest_root: Path, path: str, named_outside: Sequence[str]) -> Path:
    """Where an output goes on the user's machine: under ``dest_root`` for a relative name, at
    its own absolute place for one under a path the run's arguments named outside the working
    directory; anything else is ``errors.UnsafePath`` (never written outside what was named)."""
    if not path.startswith("/"):
        return join_under(dest_root, path)
    absolute = safe_abspath(path)
    if not any(absolute.is_relative_to(named) for named in named_outside):
        raise errors.UnsafePath(f"unsafe path {path!r}: no argument named it")
    return Path(absolute)
