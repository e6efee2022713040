"""Run one execution: materialise, run in the sandbox, ship logs, collect outputs, report."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
from pathlib import Path

from rgrid import domain, errors, sandbox
from rgrid.domain import ExecutionState, FailureClass
from rgrid.envs.cache import PythonEnv
from rgrid.paths import join_under
from rgrid.runner import ControlPlane, RunnerConfig
from rgrid.runner import workdir as work
from rgrid.runner.classify import classify
from rgrid.runner.logship import LogShipper
from rgrid.runner.places import FALLBACK_DIR, Layout, elsewhere_warning, scan_outside
from rgrid.runner.workdir import OutputScan, find_outputs
from rgrid.sandbox import reads
from rgrid.text import printable

logger = logging.getLogger(__name__)

#: where the environment appears inside the bubblewrap sandbox
SANDBOX_ENV_PATH = Path("/opt/rgrid/env")
SANDBOX_HOME = "/tmp"
#: an execution takes one slot, and a worker has as many slots as CPUs (SPEC §14)
CPUS_PER_EXECUTION = 1.0


def _sandbox_env(user_env: dict[str, str], python_bin: Path) -> dict[str, str]:
    """A scrubbed environment: nothing of the grid's own, the user's ``--env`` on top."""
    env = {
        "PATH": f"{python_bin}:/usr/local/bin:/usr/bin:/bin",
        "HOME": SANDBOX_HOME,
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        # Output must reach the user line by line, as it would on a terminal.
        "PYTHONUNBUFFERED": "1",
        "PYTHONIOENCODING": "utf-8",
    }
    env.update(user_env)
    return env


def _sandbox_spec(
    spec: domain.ExecutionSpec, env: PythonEnv, layout: Layout, config: RunnerConfig
) -> sandbox.SandboxSpec:
    env_root = SANDBOX_ENV_PATH if layout.mounted else env.root
    python = env_root / "bin" / "python"
    if layout.mounted:
        layout.check_against([env.interpreter.prefix, SANDBOX_ENV_PATH])
    return sandbox.SandboxSpec(
        argv=[str(python), *layout.argv(spec)],
        workdir=layout.workdir,
        workdir_inside=layout.cwd_inside,
        rw_binds=layout.rw_binds(),
        env=_sandbox_env(spec.env, python.parent),
        ro_binds=(
            (env.interpreter.prefix, env.interpreter.prefix),
            (env.root, SANDBOX_ENV_PATH),
        ),
        timeout_s=spec.timeout_s,
        memory_bytes=spec.memory_bytes,
        network=spec.network,
        disk_bytes=spec.disk_bytes,
        disk_reserve_bytes=config.disk_reserve_bytes,
        cpus=CPUS_PER_EXECUTION,
        stdin_path=stdin_path(layout.workdir) if spec.stdin is not None else None,
    )


def stdin_path(workdir: Path) -> Path:
    """Where an execution's stdin is kept: beside its work directory, never in it, so the
    script neither sees it in its tree nor gets it back as an output."""
    return workdir.with_name(workdir.name + ".stdin")


def _links_safe(box: sandbox.Sandbox) -> bool:
    """Inputs may be hard links to stored blobs only where the script runs as another user,
    without capabilities: it can then replace such a file but never write into it."""
    from rgrid.sandbox.bwrap import privilege_drop_available

    return box.name == "bwrap" and privilege_drop_available()


def _make_places(spec: domain.ExecutionSpec, layout: Layout) -> list[tuple[domain.FileRef, Path]]:
    layout.prepare()
    for folder in spec.dirs:
        join_under(layout.workdir, folder).mkdir(parents=True, exist_ok=True)
    placed = [(ref, layout.input_dest(ref)) for ref in spec.inputs]
    for parent in {dest.parent for _, dest in placed}:
        parent.mkdir(parents=True, exist_ok=True)
    return placed


async def _materialise(
    spec: domain.ExecutionSpec, plane: ControlPlane, layout: Layout, link: bool
) -> dict[str, work.Stamp]:
    """Put the directories, inputs and stdin in place (hard links from the store where
    ``link`` allows, else copies: in one go what the store vouches for, the rest one by one,
    verified); returns the inputs' stamps."""
    placed = await asyncio.to_thread(_make_places, spec, layout)
    if not placed:
        done: list[bool] = []
    elif link:
        done = await plane.link_inputs(placed)
    else:
        done = await plane.copy_inputs(placed)
    for (ref, dest), ready in zip(placed, done, strict=True):
        if not ready:
            await plane.fetch_input(ref, dest)
    if spec.stdin is not None:
        if spec.stdin.size == 0:  # an empty stdin has no blob
            stdin_path(layout.workdir).write_bytes(b"")
        else:
            await plane.fetch_input(spec.stdin, stdin_path(layout.workdir))
    return await asyncio.to_thread(work.stamps, [(ref.path, dest) for ref, dest in placed])


async def _watch(
    spec: domain.ExecutionSpec, layout: Layout, box: sandbox.Sandbox, config: RunnerConfig
) -> reads.Watch | None:
    """Start observing which inputs the run opens; None where that cannot be done fully.
    Only a sandbox with its own mount namespace can be told apart from the grid's own opens.
    Files outside the working directory (mounted from a mirror) are not watched yet: a run
    with any of them counts as not observed (the whole-input rule, never a stale hit)."""
    if not config.read_tracking or box.name != "bwrap":
        return None
    if any(ref.path.startswith("/") for ref in spec.inputs):
        return None
    observer = reads.observer()
    if observer is None:
        return None
    files = [ref.path for ref in spec.inputs]  # materialised at these paths
    try:
        return await asyncio.to_thread(observer.watch, layout.workdir, files)
    except OSError as exc:
        logger.warning(
            "reads of %s not observed: %s",
            spec.execution_id,
            exc,
            extra={"action": "reads_unobserved", "execution_id": spec.execution_id},
        )
        return None


async def _run_observed(
    box: sandbox.Sandbox,
    spec: sandbox.SandboxSpec,
    watch: reads.Watch | None,
    shipper: LogShipper,
    cancel: asyncio.Event,
) -> tuple[sandbox.SandboxResult, domain.InputReads | None]:
    """Run the sandbox; the watch ends once every process of it is gone (bwrap reaps its
    whole PID namespace), so no open of the run is still to come."""
    try:
        result = await box.run(spec, shipper.on_output, cancel)
    finally:
        observed = await asyncio.to_thread(watch.finish) if watch is not None else None
    return result, observed


async def _scan(
    spec: domain.ExecutionSpec,
    layout: Layout,
    config: RunnerConfig,
    shipper: LogShipper,
    placed: dict[str, work.Stamp],
) -> OutputScan:
    """What the run produced; each file the grid cannot name gets a warning in the log, and
    files written outside the working directory but not where an argument named get one too."""
    inputs = {ref.path: ref for ref in spec.inputs}
    scan = await asyncio.to_thread(
        find_outputs,
        layout.workdir,
        inputs,
        max_bytes=config.max_output_bytes,
        max_files=config.max_output_files,
        skip_top=frozenset() if layout.mounted else frozenset({FALLBACK_DIR}),
        placed=placed,
        dirs_before=work.existing_dirs((ref.path for ref in spec.inputs), spec.dirs),
    )
    outside = await asyncio.to_thread(scan_outside, layout, inputs)
    for name, why in scan.refused:
        shipper.system(f"warning: output {printable(name)} not kept: {why}")
    if (warning := elsewhere_warning(outside.elsewhere)) is not None:
        shipper.system(printable(warning))
    return dataclasses.replace(scan, files=[*scan.files, *outside.files])


async def _collect(
    scan: OutputScan, plane: ControlPlane, outcome: domain.Outcome
) -> domain.Outcome:
    outputs = tuple([await plane.store_output(full, rel) for rel, full in scan.files])
    if scan.over_limit and outcome.state is ExecutionState.SUCCEEDED:
        return dataclasses.replace(
            outcome,
            state=ExecutionState.FAILED,
            failure_class=FailureClass.OUTPUT_LIMIT,
            cause=f"outputs over the limit: {scan.dropped} files not kept",
            hint="write fewer or smaller files, or raise the grid's output limits",
            outputs=outputs,
            output_dirs=tuple(scan.dirs),
        )
    return dataclasses.replace(outcome, outputs=outputs, output_dirs=tuple(scan.dirs))


async def run_execution(
    spec: domain.ExecutionSpec,
    plane: ControlPlane,
    config: RunnerConfig,
    cancel: asyncio.Event,
) -> domain.Outcome:
    """The whole pipeline; never raises for the script's own failures, only reports them."""
    box = sandbox.detect()
    layout = Layout.of(spec, config.work_root, mounted=box.name == "bwrap")
    for directory in (layout.workdir, layout.outside):
        shutil.rmtree(directory, ignore_errors=True)
    stdin_path(layout.workdir).unlink(missing_ok=True)
    try:
        box = sandbox.detect()
        try:
            link = config.link_inputs and _links_safe(box)
            placed = await _materialise(spec, plane, layout, link)
        except errors.RgridError as exc:
            return domain.Outcome(
                ExecutionState.FAILED,
                domain.EXIT_RGRID_FAILURE,
                FailureClass.INPUT_ERROR,
                cause=f"an input could not be prepared: {exc.message}",
            )
        interpreter = config.interpreters[spec.python or config.default_python]
        shipper = LogShipper(
            plane,
            attempt=spec.attempt,
            start_seq=spec.log_seq_start,
            max_bytes=config.max_log_bytes,
        )
        async with shipper:
            try:
                async with config.env_cache.environment(
                    spec.requirements, interpreter, shipper.setup
                ) as env:
                    result, observed = await _run_observed(
                        box,
                        _sandbox_spec(spec, env, layout, config),
                        await _watch(spec, layout, box, config),
                        shipper,
                        cancel,
                    )
            except errors.UnsafePath as exc:
                return domain.Outcome(
                    ExecutionState.FAILED,
                    domain.EXIT_RGRID_FAILURE,
                    FailureClass.INPUT_ERROR,
                    cause=exc.message,
                    hint=exc.hint,
                )
            except errors.DependencyError as exc:
                return domain.Outcome(
                    ExecutionState.FAILED,
                    domain.EXIT_RGRID_FAILURE,
                    FailureClass.DEPENDENCY_ERROR,
                    cause=exc.message,
                    hint=exc.hint,
                )
            outcome = dataclasses.replace(
                classify(
                    result,
                    list(shipper.stderr_tail),
                    timeout_s=spec.timeout_s,
                    memory_bytes=spec.memory_bytes,
                    disk_bytes=spec.disk_bytes,
                ),
                packages=env.packages,
                python_version=interpreter.full_version,
                reads=observed,
            )
            if outcome.state is ExecutionState.CANCELLED:
                return outcome
            if outcome.failure_class is FailureClass.DISK_LIMIT:
                return outcome  # keeping what filled the disk would only move it into storage
            scan = await _scan(spec, layout, config, shipper, placed)
        return await _collect(scan, plane, outcome)
    finally:
        if not config.keep_workdirs:
            for directory in (layout.workdir, layout.outside):
                await asyncio.to_thread(shutil.rmtree, directory, True)
            stdin_path(layout.workdir).unlink(missing_ok=True)
