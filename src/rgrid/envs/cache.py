"""The environment cache: one virtual environment per (dependency spec, interpreter, platform).

Built once with uv under a lock (other executions with the same key wait for it), inside the
sandbox (``envs.build``), in a temporary directory renamed into place when complete and then
read-only, bytecode compiled at build time. Later executions with
the same key reuse it without running uv at all. An environment in use holds a shared lock on its
lock file; eviction (least recently used first, past a size budget) takes the lock exclusively
without waiting, so an environment in use is never removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import shutil
import stat
import sysconfig
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import IO, Any

from rgrid import errors
from rgrid.envs import build
from rgrid.envs.pythons import Interpreter

logger = logging.getLogger(__name__)

MANIFEST = "rgrid-env.json"
FORMAT_VERSION = 1
ENV_CACHE_BYTES = 20 * 1024**3

SetupLine = build.SetupLine


@dataclasses.dataclass(frozen=True)
class PythonEnv:
    """A ready environment: its root, the interpreter it was made from, what is installed."""

    root: Path
    interpreter: Interpreter
    packages: tuple[str, ...]
    built_now: bool

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"


def env_key(requirements: Sequence[str], interpreter: Interpreter) -> str:
    """sha256 of the normalised spec, the exact interpreter version and the platform."""
    material = {
        "format": FORMAT_VERSION,
        "requirements": sorted({line.strip() for line in requirements if line.strip()}),
        "python": interpreter.full_version,
        "platform": sysconfig.get_platform(),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


class EnvCache:
    def __init__(
        self,
        root: Path,
        *,
        budget_bytes: int = ENV_CACHE_BYTES,
        build_config: build.BuildConfig | None = None,
    ) -> None:
        self.root = root
        self.budget_bytes = budget_bytes
        self.build_config = build_config or build.BuildConfig()
        self.builds = 0  # environments built by this process (for /metrics and tests)
        self._locks: dict[str, asyncio.Lock] = {}
        (root / "locks").mkdir(parents=True, exist_ok=True)

    @contextlib.asynccontextmanager
    async def environment(
        self, requirements: Sequence[str], interpreter: Interpreter, on_line: SetupLine
    ) -> AsyncIterator[PythonEnv]:
        """A ready environment, held (not evictable) until the block ends.

        Raises ``errors.DependencyError`` when the install fails (nothing is left behind).
        """
        key = env_key(requirements, interpreter)
        async with self._locks.setdefault(key, asyncio.Lock()):
            built = await self._ensure(key, requirements, interpreter, on_line)
            # held and marked used in one thread hop: each costs a run ms on a busy grid
            holder, manifest = await asyncio.to_thread(self._hold_and_use, key)
        try:
            yield PythonEnv(self.root / key, interpreter, tuple(manifest["packages"]), built)
        finally:
            holder.close()  # releases the shared lock
        if built:
            await asyncio.to_thread(self.evict)

    def _hold_and_use(self, key: str) -> tuple[IO[str], dict[str, Any]]:
        """The environment held (a shared lock: not evictable) and its manifest (``_use``)."""
        holder = self._hold(key)
        try:
            return holder, self._use(key)
        except BaseException:
            holder.close()
            raise

    def _use(self, key: str) -> dict[str, Any]:
        """The environment's manifest, its last use (for LRU eviction) set to now."""
        manifest: dict[str, Any] = json.loads((self.root / key / MANIFEST).read_text())
        os.utime(self.root / key / MANIFEST)
        return manifest

    def _lock_path(self, key: str) -> Path:
        return self.root / "locks" / f"{key}.lock"

    def _hold(self, key: str) -> IO[str]:
        handle = self._lock_path(key).open("a")
        fcntl.flock(handle, fcntl.LOCK_SH)
        return handle

    async def _ensure(
        self, key: str, requirements: Sequence[str], interpreter: Interpreter, on_line: SetupLine
    ) -> bool:
        if (self.root / key / MANIFEST).exists():
            return False
        handle = await asyncio.to_thread(self._lock_path(key).open, "a")
        try:
            await asyncio.to_thread(fcntl.flock, handle, fcntl.LOCK_EX)
            if (self.root / key / MANIFEST).exists():  # another process built it meanwhile
                return False
            await self._build(key, requirements, interpreter, on_line)
            return True
        finally:
            handle.close()

    async def _build(
        self, key: str, requirements: Sequence[str], interpreter: Interpreter, on_line: SetupLine
    ) -> None:
        """Build in the sandbox in a scratch directory, then make the environment read-only
        and rename it into place; the scratch directory (uv's cache for this build) goes."""
        scratch = self.root / f".build-{uuid.uuid4().hex[:12]}"
        scratch.mkdir()
        wanted = [line for line in requirements if line.strip()]
        try:
            packages = await build.build_environment(
                scratch, wanted, interpreter, self.build_config, on_line
            )
            env = scratch / build.ENV_DIR
            await asyncio.to_thread(build.check_built, env)
            manifest = {
                "key": key,
                "python": interpreter.full_version,
                "requirements": wanted,
                "packages": packages,
                "built_at": time.time(),
            }
            await asyncio.to_thread(_write_new, env / MANIFEST, json.dumps(manifest, indent=2))
            await asyncio.to_thread(_make_read_only, env)
            await asyncio.to_thread(os.rename, env, self.root / key)
            self.builds += 1
            logger.info("environment built", extra={"action": "env_built", "key": key})
        finally:
            await asyncio.to_thread(_remove_tree, scratch)

    def evict(self) -> list[str]:
        """Remove least-recently-used environments not in use until under the budget."""
        entries = []
        for path in self.root.iterdir():
            manifest = path / MANIFEST
            if path.name.startswith(".") or not manifest.exists():
                continue
            entries.append((manifest.stat().st_mtime, path, _size(path)))
        total = sum(size for _, _, size in entries)
        removed = []
        for _, path, size in sorted(entries):
            if total <= self.budget_bytes:
                break
            if self._remove_if_unused(path):
                total -= size
                removed.append(path.name)
        return removed

    def _remove_if_unused(self, path: Path) -> bool:
        with self._lock_path(path.name).open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # in use
            trash = self.root / f".trash-{uuid.uuid4().hex[:12]}"
            os.rename(path, trash)
        _remove_tree(trash)
        logger.info("environment evicted", extra={"action": "env_evicted", "key": path.name})
        return True


def _size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def _write_new(path: Path, text: str) -> None:
    """Create ``path`` with ``text``; never through a symlink or over a file the build left."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, 0o644)
    except FileExistsError:
        raise errors.RgridError(f"the build wrote {path.name} itself; refusing it") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _make_read_only(root: Path) -> None:
    """Give every file and directory under ``root`` to the grid's own user (the build ran as the
    sandbox's unprivileged one, which scripts run as too) and take write permission off them
    (symlinks untouched: chmod would follow them), so nothing writes to a built environment."""
    owner = (os.geteuid(), os.getegid())
    for dirpath, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = os.path.join(dirpath, name)
            with contextlib.suppress(OSError):
                os.lchown(path, *owner)
            _chmod_no_follow(path, lambda mode: mode & ~0o222)
    with contextlib.suppress(OSError):
        os.lchown(root, *owner)
    _chmod_no_follow(str(root), lambda mode: mode & ~0o222)


def _remove_tree(root: Path) -> None:
    """Remove ``root`` even where its directories are read-only (a built environment)."""
    if not os.path.lexists(root):
        return
    for dirpath, dirs, _files in os.walk(root):
        for name in [".", *dirs]:
            _chmod_no_follow(os.path.join(dirpath, name), lambda mode: mode | 0o700)
    shutil.rmtree(root, ignore_errors=True)


def _chmod_no_follow(path: str, change: Callable[[int], int]) -> None:
    with contextlib.suppress(OSError):
        mode = os.lstat(path).st_mode
        if not stat.S_ISLNK(mode):
            os.chmod(path, stat.S_IMODE(change(mode)))
