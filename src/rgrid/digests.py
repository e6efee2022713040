"""Names computed alike by the CLI and the grid (kept apart from ``domain``: the CLI imports
this on every run, and the domain's dataclasses cost milliseconds to create)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def tree_digest(files: Iterable[tuple[str, str, int]], dirs: Iterable[str]) -> str:
    """The name of a project tree: the sha256 of its canonical listing — every file as
    ``path NUL sha256 NUL size NUL``, sorted by path, then a NUL, then every directory no file
    implies as ``path NUL``, sorted. A POSIX path never holds NUL, so the listing reads one
    way only. The CLI and the grid compute it alike, so a tree is sent once and named by it
    after. (Joined strings, not JSON: the CLI computes it on every run, over thousands of
    files.)"""
    parts = [f"{path}\0{sha}\0{size}\0" for path, sha, size in sorted(files)]
    parts.append("\0")
    parts += [f"{path}\0" for path in sorted(set(dirs))]
    return hashlib.sha256("".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
