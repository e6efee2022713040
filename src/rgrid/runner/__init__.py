"""The pipeline one execution goes through on a worker, wherever it runs.

work directory → environment → sandbox → log lines shipped as produced → outputs collected →
outcome reported. The runner talks to the grid only through ``ControlPlane``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from rgrid import domain
from rgrid.envs.cache import EnvCache
from rgrid.envs.pythons import Interpreter


class ControlPlane(Protocol):
    """What a runner needs from the grid for one execution."""

    async def fetch_input(self, ref: domain.FileRef, dest: Path) -> None:
        """Write the input's bytes to ``dest`` (its parent exists). Raises RgridError."""

    async def copy_inputs(self, placed: Sequence[tuple[domain.FileRef, Path]]) -> list[bool]:
        """Copy inputs in one go where the grid's store vouches for their content (no second
        read to verify them); per input, whether it was copied. The others are to be fetched
        with ``fetch_input``."""

    async def store_outputs(self, files: Sequence[tuple[str, Path]]) -> list[domain.FileRef]:
        """Store each file (relative name, path) as an output (the file may be taken away:
        the work directory is discarded after collection); returns their references."""

    async def append_logs(self, segments: list[domain.LogSegment]) -> None:
        """Persist log segments (consecutive sequence numbers) before returning."""


@dataclasses.dataclass(frozen=True)
class RunnerConfig:
    work_root: Path
    env_cache: EnvCache
    #: the interpreters of this worker by minor version ("3.11"), and the default one
    interpreters: dict[str, Interpreter]
    default_python: str
    worker: str
    max_output_bytes: int
    max_output_files: int
    max_log_bytes: int
    #: a script writing while the disk has less free than this is stopped
    disk_reserve_bytes: int = 1024**3
    keep_workdirs: bool = False
    #: observe which input files each run opens (``sandbox.reads``)
    read_tracking: bool = True
    #: the tree as a shared read-only layer under an overlay (``ServerSettings.overlay_inputs``)
    overlay_inputs: bool = True
