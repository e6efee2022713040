"""The project tree as a read-only layer shared by executions, under an overlay per execution.

Copying a project of thousands of files into every execution's work directory costs a file
operation each (tenths of a millisecond apiece on a busy disk). Instead the tree an execution
was given (``domain.Tree``: the files its arguments name are not in it) is built once into
``<work_root>/.layers/<the tree's digest, with - for :>`` (an overlay's options separate
directories with ":", so no layer's path holds one) and the execution's work directory is an overlay:
that layer below, read-only, and an empty directory of its own above, where everything the
script writes lands. A file the script changes is first copied up by the kernel; the layer never
changes, so the next run of the same tree, or the next item of a batch, mounts it as it is.

Everything in a layer belongs to the sandbox's user, as the user's own files do on their
machine (the script may open them for writing: the kernel copies them up first). No sandbox ever
sees a layer's own path: only the overlay, mounted where the script runs.

Layers are kept while used and for the ``KEEP`` most recently used after; each is locked
(``flock``, shared) by every execution using it, so no grid process removes one in use.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

LAYERS_DIR = ".layers"
#: a layer's directory: its tree's digest with "-" for ":" (or a bare sha256 hex, from before)
_LAYER_RE = re.compile(r"(?:(?:blake3|sha256)-)?[0-9a-f]{64}")
#: layers kept besides those in use (least recently used ones go first)
KEEP = 8


@dataclasses.dataclass(frozen=True)
class Layer:
    path: Path
    key: str


class Layers:
    """The layers under ``root`` (``<work_root>/.layers``), owned by ``owner`` (a uid)."""

    def __init__(self, root: Path, owner: int, keep: int = KEEP) -> None:
        self.root = root
        self._owner = owner
        self._keep = keep

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[Layer | None]:
        """Lock layer ``key`` for use while the block runs: the layer, or None if it is not
        built yet (the caller then builds it: ``scratch``, fill, ``publish``)."""
        self.root.mkdir(mode=0o700, exist_ok=True)
        lock = self._lock_shared(key)
        try:
            path = self.root / _dir_name(key)
            yield Layer(path, key) if path.is_dir() else None
        finally:
            os.close(lock)

    def scratch(self) -> Path:
        """A new empty directory beside the layers to build one in."""
        self.root.mkdir(mode=0o700, exist_ok=True)
        path = self.root / f".build-{uuid.uuid4().hex}"
        path.mkdir()
        return path

    def publish(self, scratch: Path, key: str) -> Layer:
        """Give the built tree to the sandbox's user and move it into place (an existing layer
        of the same key, built meanwhile by another execution, is kept and ``scratch`` goes)."""
        give(scratch, self._owner)
        target = self.root / _dir_name(key)
        try:
            scratch.rename(target)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            shutil.rmtree(scratch, ignore_errors=True)
        os.utime(target)  # most recently used
        return Layer(target, key)

    def touch(self, layer: Layer) -> None:
        with contextlib.suppress(OSError):
            os.utime(layer.path)

    def evict(self) -> None:
        """Remove the least recently used layers beyond ``keep`` that nobody holds."""
        try:
            entries = [
                e for e in os.scandir(self.root) if e.is_dir() and _LAYER_RE.fullmatch(e.name)
            ]
        except FileNotFoundError:
            return
        entries.sort(key=lambda e: e.stat().st_mtime_ns, reverse=True)
        for entry in entries[self._keep :]:
            lock_path = self.root / f"{entry.name}.lock"
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue  # in use
            try:
                shutil.rmtree(entry.path, ignore_errors=True)
                lock_path.unlink(missing_ok=True)
            finally:
                os.close(fd)
        for stale in self.root.glob(".build-*"):
            # a build abandoned by a grid process that died; a live build is minutes old at most
            with contextlib.suppress(OSError):
                if _age_s(stale) > 3600:
                    shutil.rmtree(stale, ignore_errors=True)

    def _lock_shared(self, key: str) -> int:
        """A shared lock on ``key``'s lock file, that file being the one in place (an evictor
        removes the file after taking it exclusively: a lock on a removed file protects
        nothing, so that case is retried)."""
        path = self.root / f"{_dir_name(key)}.lock"
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_SH)
            try:
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)


def _dir_name(key: str) -> str:
    return key.replace(":", "-")


def _age_s(path: Path) -> float:
    return time.time() - path.stat().st_mtime


def give(root: Path, owner: int) -> None:
    """Every directory and file under ``root`` (and it) to ``owner``; files 0644, dirs 0755."""
    for dirpath, _, filenames in os.walk(root):
        os.chown(dirpath, owner, owner)
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = os.path.join(dirpath, name)
            os.chown(path, owner, owner, follow_symlinks=False)
            os.chmod(path, 0o644)
