"""Relative paths that are safe to join under a directory (no zip-slip), used on both sides."""

from __future__ import annotations

import os
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
