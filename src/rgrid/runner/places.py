"""Where an execution's files live on the worker and where the script sees them (SPEC §4.2).

Under bubblewrap the work directory (the user's tree) is mounted at the user's own working
directory, and each directory named outside it at its own place, from a mirror beside the work
directory: arguments stay exactly as typed. The process sandbox cannot mount: there the mirror
lies inside the work directory under ``_inputs/`` and arguments naming it are rewritten (the one
case where ``sys.argv`` differs, as ``rgrid doctor`` says).
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath

from rgrid import digests, domain, errors
from rgrid.paths import covers_system, join_under, safe_abspath
from rgrid.runner import mounts

FALLBACK_DIR = "_inputs"
#: how many of the files written outside every named path a warning names
ELSEWHERE_NAMED = 3


@dataclasses.dataclass(frozen=True)
class Layout:
    workdir: Path
    #: the mirror of paths outside the working directory (``/a/b`` at ``outside/a/b``)
    outside: Path
    #: whether the sandbox mounts (bwrap) or the fallback rewrites arguments
    mounted: bool
    #: where the work directory appears to the script (None: at its own path)
    cwd_inside: Path | None
    roots: tuple[str, ...]
    named: tuple[str, ...]

    @classmethod
    def of(cls, spec: domain.ExecutionSpec, work_root: Path, mounted: bool) -> Layout:
        workdir = work_root / spec.execution_id
        outside = work_root / f"{spec.execution_id}.outside" if mounted else workdir / FALLBACK_DIR
        cwd_inside = None
        if (
            mounted
            and spec.cwd not in (None, "/")
            and covers_system(safe_abspath(spec.cwd)) is None
        ):
            cwd_inside = Path(spec.cwd)
        return cls(workdir, outside, mounted, cwd_inside, spec.mount_roots, spec.named_outside)

    @property
    def tmp(self) -> Path | None:
        """The script's /tmp on this host, a tmpfs the runner mounts, so that what a run leaves
        there can be named as not collected (bubblewrap run by root; otherwise the sandbox's
        own tmpfs, or the host's /tmp for the process sandbox)."""
        if not (self.mounted and mounts.available("tmpfs")):
            return None
        return self.workdir.with_name(f"{self.workdir.name}.tmp")

    def mirror(self, absolute: str) -> Path:
        return self.outside.joinpath(*safe_abspath(absolute).parts[1:])

    def input_dest(self, ref: domain.FileRef) -> Path:
        return (
            self.mirror(ref.path)
            if ref.path.startswith("/")
            else join_under(self.workdir, ref.path)
        )

    def prepare(self) -> None:
        """Make the work directory and the (empty) mounted directories outside it."""
        self.workdir.mkdir(parents=True)
        for root in self.roots:
            self.mirror(root).mkdir(parents=True, exist_ok=True)
            if self.cwd_inside is not None and self.cwd_inside.is_relative_to(root):
                # the work directory is mounted inside this one: its mount point must exist
                self.mirror(str(self.cwd_inside)).mkdir(parents=True, exist_ok=True)

    def check_against(self, system_binds: list[Path]) -> None:
        """Refuse a place that would hide the grid's own mounts (its Python, the environment)."""
        places = [Path(root) for root in self.roots]
        if self.cwd_inside is not None:
            places.append(self.cwd_inside)
        for place in places:
            for system in system_binds:
                if place == system or place.is_relative_to(system):
                    raise errors.UnsafePath(
                        f"{place} would cover the grid's own {system}",
                        hint="run from, or name, another directory",
                    )

    def rw_binds(self) -> tuple[tuple[Path, Path], ...]:
        return tuple((self.mirror(root), Path(root)) for root in self.roots) if self.mounted else ()

    def argv(self, spec: domain.ExecutionSpec) -> list[str]:
        """The script's name and arguments: as typed, or rewritten for the process sandbox."""
        typed = [spec.argv0 or spec.script, *spec.args]
        if self.mounted or not self.roots:
            return typed
        return [self._fallback(arg, spec.cwd) for arg in typed]

    def _fallback(self, arg: str, cwd: str | None) -> str:
        flag, equals, value = arg.partition("=") if arg.startswith("-") else ("", "", arg)
        if not value:
            return arg
        absolute = posixpath.normpath(posixpath.join(cwd or "/", value))
        if not any(PurePosixPath(absolute).is_relative_to(root) for root in self.roots):
            return arg
        rewritten = posixpath.join(FALLBACK_DIR, absolute.lstrip("/"))
        if value.endswith("/"):
            rewritten += "/"
        return f"{flag}{equals}{rewritten}"


@dataclasses.dataclass(frozen=True)
class OutsideScan:
    #: (absolute name, file on this worker)
    files: list[tuple[str, Path]]
    #: absolute names of files written outside every named path (not collected)
    elsewhere: list[str]


def _files(directory: Path) -> Iterator[tuple[Path, os.stat_result]]:
    for dirpath, dirnames, filenames in os.walk(directory, followlinks=False):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames:
            path = Path(dirpath) / name
            info = path.lstat()
            if stat.S_ISREG(info.st_mode):
                yield path, info


def scan_outside(layout: Layout, inputs: Mapping[str, domain.FileRef]) -> OutsideScan:
    """Files the run created or changed outside the working directory: those at a named path
    (or under a named directory) come back; others are only named in a warning."""
    named = [PurePosixPath(n) for n in layout.named]
    files: list[tuple[str, Path]] = []
    elsewhere: list[str] = []
    for root in layout.roots:
        for path, info in _files(layout.mirror(root)):
            absolute = "/" + path.relative_to(layout.outside).as_posix()
            given = inputs.get(absolute)
            if (
                given is not None
                and given.size == info.st_size
                and digests.file_matches(path, given.digest)
            ):
                continue
            if any(PurePosixPath(absolute).is_relative_to(n) for n in named):
                files.append((absolute, path))
            else:
                elsewhere.append(absolute)
    return OutsideScan(sorted(files), sorted(elsewhere))


def left_in_tmp(tmp: Path) -> list[str]:
    """The files a run left in its /tmp (``tmp`` on this host), as the script named them;
    not those under a dot-directory at its top (HOME is /tmp: libraries keep their caches and
    settings there, as they would in a user's home directory)."""
    left = []
    for path, _ in _files(tmp):
        rel = path.relative_to(tmp)
        if not rel.parts[0].startswith("."):
            left.append(f"/tmp/{rel.as_posix()}")
    return sorted(left)


def elsewhere_warning(elsewhere: list[str]) -> str | None:
    if not elsewhere:
        return None
    shown = ", ".join(elsewhere[:ELSEWHERE_NAMED])
    more = (
        f" and {len(elsewhere) - ELSEWHERE_NAMED} more" if len(elsewhere) > ELSEWHERE_NAMED else ""
    )
    return (
        f"warning: not collected (written outside the working directory, not at a path an "
        f"argument named): {shown}{more}"
    )
