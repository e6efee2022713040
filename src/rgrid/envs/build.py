"""Building one environment inside the sandbox (SPEC §14): ``uv venv``, ``uv pip install`` and the
bytecode compilation each run as a sandboxed process that, like a script, sees only its own
directory.

A build directory holds ``env/`` (the environment, renamed into the cache afterwards), ``cache/``
(uv's cache for this build alone), ``tmp/`` and ``home/``. Package build backends run arbitrary
code: they must see nothing of the grid's home, keys, variables or other environments, and share
no cache with other builds (a shared writable cache would let one build plant files in another).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import stat
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

from rgrid import errors, sandbox
from rgrid.envs.passed import PASSED_SETTINGS
from rgrid.envs.pythons import Interpreter
from rgrid.sandbox import lines

ENV_DIR = "env"
BUILD_TIMEOUT_S = 1800.0  # per step
#: builds (uv's downloads and unpacking, compiling bytecode on every core) run this much lower
#: in CPU priority than the grid: the API and running scripts come first
BUILD_NICENESS = 10
#: RLIMIT_AS counts address space reserved, not used (uv's threads reserve much): a backstop
BUILD_MEMORY_BYTES = 8 * 1024**3
#: where the uv binary and the operator's package directory appear in a bubblewrap build
UV_INSIDE = Path("/opt/rgrid/bin/uv")
FIND_LINKS_INSIDE = Path("/opt/rgrid/find-links")
#: of those, the ones naming a file or directory, mounted read-only where they are
TRUST_PATHS = ("SSL_CERT_FILE", "SSL_CERT_DIR")
#: package test suites are never imported by scripts; compiling them doubles a build's time
BYTECODE_SKIP = r"[/\\]tests?[/\\]"

SetupLine = Callable[[str], Awaitable[None]]


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """What the grid's operator sets for builds.

    ``find_links``: a directory of wheels and sdists offered besides the index
    (``RGRID_FIND_LINKS``), mounted read-only. ``passed_env``: uv's index settings, TLS trust
    and proxies, taken from the grid's environment (only the names in ``PASSED_SETTINGS``).
    """

    find_links: Path | None = None
    passed_env: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], find_links: Path | None) -> BuildConfig:
        passed = {k: v for k, v in environ.items() if k in PASSED_SETTINGS}
        return cls(find_links.resolve() if find_links is not None else None, passed)

    def trust_binds(self) -> list[tuple[Path, Path]]:
        """The CA bundle or directory the operator names, mounted read-only at the same path."""
        named = (self.passed_env.get(name) for name in TRUST_PATHS)
        return [(Path(path), Path(path)) for path in named if path and os.path.exists(path)]


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


async def build_environment(
    scratch: Path,
    requirements: Sequence[str],
    interpreter: Interpreter,
    config: BuildConfig,
    on_line: SetupLine,
) -> list[str]:
    """Build an environment in ``scratch / ENV_DIR``; returns what it holds (``name==version``).

    ``scratch`` is an empty directory. Raises ``errors.DependencyError`` when the install
    fails or a step runs over ``BUILD_TIMEOUT_S``, ``errors.SandboxError`` when the sandbox
    cannot start, and ``errors.RgridError`` when uv cannot create the environment.
    """
    # off the event loop: the first build probes the sandbox and finds uv (subprocesses)
    steps = await asyncio.to_thread(_Steps, scratch, interpreter, config)
    venv = scratch / ENV_DIR
    code, output = await steps.run(
        ["venv", "--quiet", "--relocatable", "--python", str(interpreter.path), str(venv)]
    )
    if code != 0:
        raise errors.RgridError(f"uv venv failed: {output[-500:]}")
    packages: list[str] = []
    if requirements:
        (scratch / "requirements.txt").write_text("\n".join(requirements) + "\n")
        await on_line(
            f"installing {len(requirements)} requirement(s) with uv: {', '.join(requirements)}"
        )
        code, output = await steps.run(steps.install_args(), on_line, network=True)
        if code != 0:
            raise _dependency_error(requirements, output)
        # a fresh environment: uv's " + name==version" lines are exactly what it holds
        packages = sorted(
            line.strip()[2:] for line in output.splitlines() if line.startswith(" + ")
        )
        await steps.compile_bytecode(on_line)
    return packages


class _Steps:
    """The sandboxed processes of one build: same sandbox, mounts and environment for each."""

    def __init__(self, scratch: Path, interpreter: Interpreter, config: BuildConfig) -> None:
        self.box = sandbox.detect()
        self.scratch = scratch
        host_uv = Path(find_uv())
        # bubblewrap mounts these at fixed places; the process sandbox sees the host's paths
        inside = self.box.name == "bwrap"
        self.uv = str(UV_INSIDE if inside else host_uv)
        binds = [(host_uv, UV_INSIDE), (interpreter.prefix, interpreter.prefix)]
        binds += config.trust_binds()
        self.find_links: Path | None = None
        if config.find_links is not None:
            binds.append((config.find_links, FIND_LINKS_INSIDE))
            self.find_links = FIND_LINKS_INSIDE if inside else config.find_links
        self.binds = tuple(binds)
        for name in ("cache", "tmp", "home"):
            (scratch / name).mkdir()
        self.env = {
            **config.passed_env,
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(scratch / "home"),
            "TMPDIR": str(scratch / "tmp"),
            "LANG": "C.UTF-8",
            "NO_COLOR": "1",
            "UV_CACHE_DIR": str(scratch / "cache"),
            "UV_NO_CONFIG": "1",  # no uv.toml of the host, the user or the working directory
            "UV_PYTHON_DOWNLOADS": "never",
        }

    def install_args(self) -> list[str]:
        python = self.scratch / ENV_DIR / "bin" / "python"
        args = ["pip", "install", "--python", str(python)]
        args += ["-r", str(self.scratch / "requirements.txt")]
        if self.find_links is not None:
            args += ["--find-links", str(self.find_links)]
        return args

    async def compile_bytecode(self, on_line: SetupLine) -> None:
        """Compile the installed packages now, in parallel, with the environment's own Python
        (the environment is read-only later, so this is the only chance to write them)."""
        env = self.scratch / ENV_DIR
        argv = [str(env / "bin" / "python"), "-m", "compileall", "-q", "-j0", "-x", BYTECODE_SKIP]
        started = time.monotonic()
        # a module that does not compile is left for import time, as pip does
        await self.run([*argv, str(env / "lib")], uv=False)
        await on_line(f"bytecode compiled in {time.monotonic() - started:.1f}s")

    async def run(
        self,
        args: list[str],
        on_line: SetupLine | None = None,
        *,
        network: bool = False,
        uv: bool = True,
    ) -> tuple[int, str]:
        """Run uv with ``args`` (or ``args`` itself) in the sandbox: (exit code, its output)."""
        output: list[str] = []

        async def collect(_stream: str, blocks: list[bytes]) -> None:
            for block in blocks:
                for raw in lines.block_lines(block):
                    line = raw.decode(errors="replace").rstrip()
                    output.append(line)
                    if on_line is not None:
                        await on_line(line)

        spec = sandbox.SandboxSpec(
            argv=[self.uv, *args] if uv else args,
            workdir=self.scratch,
            env=self.env,
            ro_binds=self.binds,
            timeout_s=BUILD_TIMEOUT_S,
            memory_bytes=BUILD_MEMORY_BYTES,
            network=network,
            niceness=BUILD_NICENESS,
        )
        result = await self.box.run(spec, collect)
        if result.timed_out:
            raise errors.DependencyError(
                f"building the environment took over {BUILD_TIMEOUT_S:.0f}s",
                hint="depend on packages with pre-built wheels for this platform",
            )
        return result.exit_code, "\n".join(output)


def check_built(env: Path) -> None:
    """Refuse a build that left something other than a plain environment directory.

    The build wrote ``env``; what the grid does with it next (write the manifest, make it
    read-only, rename it, mount it) must not follow a symlink it planted to the grid's files.
    """
    try:
        mode = os.lstat(env).st_mode
    except OSError as exc:
        raise errors.RgridError(f"the build left no environment: {exc}") from exc
    if not stat.S_ISDIR(mode):
        raise errors.RgridError("the build left something other than an environment directory")


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
