"""Where a run's files are, outside the grid's work directory (SPEC §4.2): the user's working
directory, the directories outside it mounted at their own place, and the named outside paths
whose writes come back. Checked at submit, for runs and batches alike."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Protocol

from rgrid import errors
from rgrid.paths import check_mount_root, safe_abspath

MAX_MOUNT_ROOTS = 64
MAX_NAMED = 1000
MAX_ARGV0_CHARS = 4096


class Placed(Protocol):
    """What ExecutionCreate and BatchCreate share about places."""

    @property
    def cwd(self) -> str | None: ...
    @property
    def argv0(self) -> str | None: ...
    @property
    def mount_roots(self) -> list[str]: ...
    @property
    def named_outside(self) -> list[str]: ...


def _under(path: PurePosixPath, roots: Sequence[PurePosixPath]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def check(spec: Placed, paths: Sequence[str]) -> None:
    """Refuse places a sandbox could not give (``errors.InvalidRequest`` / ``UnsafePath``)."""
    if spec.cwd is not None and spec.cwd != "/":
        safe_abspath(spec.cwd)  # under a system directory it is not mounted there (runner)
    if spec.argv0 is not None and ("\x00" in spec.argv0 or len(spec.argv0) > MAX_ARGV0_CHARS):
        raise errors.InvalidRequest("the script's name cannot hold NUL or be that long")
    if len(spec.mount_roots) > MAX_MOUNT_ROOTS or len(spec.named_outside) > MAX_NAMED:
        raise errors.InvalidRequest(
            f"at most {MAX_MOUNT_ROOTS} directories outside the working directory "
            f"and {MAX_NAMED} named paths there"
        )
    roots = [check_mount_root(root) for root in spec.mount_roots]
    outside = [PurePosixPath(p) for p in paths if p.startswith("/")]
    named = [safe_abspath(p) for p in spec.named_outside]
    for path in [*outside, *named]:
        if not _under(path, roots):
            raise errors.UnsafePath(
                f"{path} lies outside the working directory and every mounted directory"
            )


def mounts(spec: Placed) -> dict[str, list[str]] | None:
    """The stored form (None when nothing outside the working directory is involved)."""
    if not spec.mount_roots and not spec.named_outside:
        return None
    return {"roots": sorted(spec.mount_roots), "named": sorted(spec.named_outside)}
