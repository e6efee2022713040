"""The clean base environment: a venv of the worker's real interpreter with nothing installed.

Scripts must not see rgrid's packages, and must not pay for the pyenv shim or the base
interpreter's site ``.pth`` files, so they run from a venv made once per interpreter.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from rgrid import errors

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class PythonEnv:
    """A ready environment: its root, its interpreter, and what must be mounted for it to run."""

    root: Path
    python_version: str
    #: the installation the venv's interpreter symlink points into
    base_prefix: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"


def real_interpreter() -> Path:
    """The real interpreter behind this process (never a shim, never a venv's symlink)."""
    return Path(getattr(sys, "_base_executable", None) or sys.executable).resolve()


def python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def ensure_base_env(envs_root: Path) -> PythonEnv:
    """Create (once, atomically) and return the clean base environment under ``envs_root``."""
    version = python_version()
    root = envs_root / f"base-py{version}"
    env = PythonEnv(root=root, python_version=version, base_prefix=Path(sys.base_prefix).resolve())
    if (root / "pyvenv.cfg").exists():
        return env
    envs_root.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=".build-", dir=envs_root))
    try:
        subprocess.run(
            [str(real_interpreter()), "-m", "venv", "--without-pip", str(building / "env")],
            check=True,
            capture_output=True,
        )
        # The venv refers to its own location only through pyvenv.cfg's neighbour lookup, so
        # renaming it into place keeps it working.
        try:
            os.rename(building / "env", root)
        except OSError:
            if not (root / "pyvenv.cfg").exists():  # lost a race with another builder: fine
                raise
    except (OSError, subprocess.CalledProcessError) as exc:
        raise errors.SandboxError(f"could not create the base Python environment: {exc}") from exc
    finally:
        shutil.rmtree(building, ignore_errors=True)
    logger.info("base environment ready", extra={"action": "env_built", "path": str(root)})
    return env
