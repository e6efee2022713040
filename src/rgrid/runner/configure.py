"""A worker's runner configuration, read from its own settings (``WorkerSettings``): what a
server's own worker and a worker on another machine build alike."""

from __future__ import annotations

import os

from rgrid.envs import pythons
from rgrid.envs.build import BuildConfig
from rgrid.envs.cache import EnvCache
from rgrid.runner import RunnerConfig
from rgrid.settings import WorkerSettings


def runner_config(settings: WorkerSettings) -> RunnerConfig:
    """A worker's runner configuration, from its own settings: its interpreters, environment
    cache and limits."""
    found = pythons.discover(p.strip() for p in settings.pythons.split(",") if p.strip())
    interpreters = {interpreter.minor: interpreter for interpreter in found}
    return RunnerConfig(
        work_root=settings.work_root,
        env_cache=EnvCache(
            settings.envs_root,
            budget_bytes=settings.env_cache_bytes,
            build_config=BuildConfig.from_environ(os.environ, settings.find_links),
        ),
        interpreters=interpreters,
        default_python=pythons.python_version(),
        worker=settings.worker_name,
        max_output_bytes=settings.max_output_bytes,
        max_output_files=settings.max_output_files,
        max_log_bytes=settings.max_log_bytes,
        disk_reserve_bytes=settings.disk_reserve_bytes,
        read_tracking=settings.read_tracking,
        overlay_inputs=settings.overlay_inputs,
    )
