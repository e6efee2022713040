"""The environment cache: one virtual environment per (dependency spec, interpreter, platform).

Built once with uv under a lock (other executions with the same key wait for it), in a temporary
directory renamed into place when complete, bytecode compiled at build time. Later executions with
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
import sysconfig
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import IO

from rgrid import errors
from rgrid.envs.pythons import Interpreter

logger = logging.getLogger(__name__)

MANIFEST = "rgrid-env.json"
FORMAT_VERSION = 1
ENV_CACHE_BYTES = 20 * 1024**3

SetupLine = Callable[[str], Awaitable[None]]


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


def find_uv() -> str:
    """The uv binary: the one shipped with the ``uv`` package, else one on PATH."""
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            raise errors.MissingExtra("environments need uv: pip install 'rgrid[server]'") from None
        return found


class EnvCache:
    def __init__(self, root: Path, *, budget_bytes: int = ENV_CACHE_BYTES) -> None:
        self.root = root
        self.budget_bytes = budget_bytes
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
            holder = await asyncio.to_thread(self._hold, key)
        try:
            manifest = json.loads((self.root / key / MANIFEST).read_text())
            os.utime(self.root / key / MANIFEST)  # last use, for LRU eviction
            yield PythonEnv(self.root / key, interpreter, tuple(manifest["packages"]), built)
        finally:
            holder.close()  # releases the shared lock
        if built:
            await asyncio.to_thread(self.evict)

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
        building = self.root / f".build-{uuid.uuid4().hex[:12]}"
        uv = find_uv()
        try:
            await _run([uv, "venv", "--quiet", "--python", str(interpreter.path), str(building)])
            wanted = [line for line in requirements if line.strip()]
            packages: list[str] = []
            if wanted:
                (building / "rgrid-requirements.txt").write_text("\n".join(wanted) + "\n")
                await on_line(
                    f"installing {len(wanted)} requirement(s) with uv: {', '.join(wanted)}"
                )
                code, output = await _stream(
                    [
                        uv,
                        "pip",
                        "install",
                        "--python",
                        str(building / "bin" / "python"),
                        "-r",
                        str(building / "rgrid-requirements.txt"),
                    ],
                    on_line,
                )
                if code != 0:
                    raise _dependency_error(wanted, output)
                # a fresh environment: uv's " + name==version" lines are exactly what it holds
                packages = sorted(
                    line.strip()[2:] for line in output.splitlines() if line.startswith(" + ")
                )
                await _compile_bytecode(building, on_line)
            manifest = {
                "key": key,
                "python": interpreter.full_version,
                "requirements": wanted,
                "packages": packages,
                "built_at": time.time(),
            }
            (building / MANIFEST).write_text(json.dumps(manifest, indent=2))
            os.rename(building, self.root / key)
            self.builds += 1
            logger.info("environment built", extra={"action": "env_built", "key": key})
        finally:
            if building.exists():
                await asyncio.to_thread(shutil.rmtree, building, True)

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
        shutil.rmtree(trash, ignore_errors=True)
        logger.info("environment evicted", extra={"action": "env_evicted", "key": path.name})
        return True


def _size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


#: package test suites are never imported by scripts; compiling them doubles a build's time
BYTECODE_SKIP = r"[/\\]tests?[/\\]"
PARALLEL_COMPILE_FILES = 400


def _count_sources(root: Path) -> int:
    return sum(1 for _dir, _dirs, files in os.walk(root) for name in files if name.endswith(".py"))


async def _compile_bytecode(env: Path, on_line: SetupLine) -> None:
    """Compile the installed packages at build time, in parallel, with the env's own Python
    (the environment is mounted read-only later, so this is the only chance to write them)."""
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        str(env / "bin" / "python"),
        "-m",
        "compileall",
        "-q",
        "-j0",
        "-x",
        BYTECODE_SKIP,
        str(env / "lib"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await process.wait()  # a module that does not compile is left for import time, as pip does
    await on_line(f"bytecode compiled in {time.monotonic() - started:.1f}s")


async def _run(argv: list[str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "UV_PYTHON_DOWNLOADS": "never", "NO_COLOR": "1"},
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise errors.RgridError(
            f"{' '.join(argv[1:3])} failed: {out.decode(errors='replace')[-500:]}"
        )
    return process.returncode or 0, out.decode(errors="replace")


async def _stream(argv: list[str], on_line: SetupLine) -> tuple[int, str]:
    """Run ``argv``, passing each output line to ``on_line``; returns (exit code, all output)."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "UV_PYTHON_DOWNLOADS": "never", "NO_COLOR": "1"},
    )
    assert process.stdout is not None
    lines = []
    async for raw in process.stdout:
        line = raw.decode(errors="replace").rstrip()
        lines.append(line)
        await on_line(line)
    return await process.wait(), "\n".join(lines)


def _dependency_error(requirements: Sequence[str], output: str) -> errors.DependencyError:
    """Name the package uv complained about, with uv's own reason."""
    # strip uv's tree-drawing characters from its error report
    text = " ".join(line.strip(" ×╰─▶│") for line in output.splitlines() if line.strip())  # noqa: RUF001
    lowered = text.lower()
    names = [_name(line) for line in requirements]
    culprit = next((n for n in names if n and n.lower() in lowered), None)
    reason = text[-400:] if text else "uv failed without a message"
    what = f"could not install {culprit}" if culprit else "could not install the dependencies"
    return errors.DependencyError(
        f"{what}: {reason}",
        hint="check the package name and version in your requirements (or PEP 723 header)",
        details={"package": culprit},
    )


def _name(requirement: str) -> str:
    for stop in "<>=!~;[ @":
        requirement = requirement.split(stop, 1)[0]
    return requirement.strip()
