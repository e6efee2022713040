"""Names computed alike by the CLI and the grid (kept apart from ``domain``: the CLI imports
this on every run, and the domain's dataclasses cost milliseconds to create)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable


def tree_digest(files: Iterable[tuple[str, str, int]], dirs: Iterable[str]) -> str:
    """The name of a project tree: the sha256 of its canonical listing (every file's path,
    content hash and size, sorted; every directory no file implies, sorted). The CLI and the
    grid compute it alike, so a tree is sent once and named by it after."""
    listing = {"dirs": sorted(set(dirs)), "files": sorted([p, s, n] for p, s, n in files)}
    text = json.dumps(listing, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
