"""Run one execution: materialise, run in the sandbox, ship logs, collect outputs, report."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import logging
import os
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

from rgrid import domain, errors, sandbox
from rgrid.domain import ExecutionState, FailureClass
from rgrid.envs.cache import PythonEnv
from rgrid.paths import join_under
from rgrid.runner import ControlPlane, RunnerConfig, layers, mounts
from rgrid.runner import workdir as work
from rgrid.runner.classify import classify
from rgrid.runner.logship import LogShipper
from rgrid.runner.places import (
    FALLBACK_DIR,
    Layout,
    OutsideScan,
    elsewhere_warning,
    left_in_tmp,
    scan_outside,
)
from rgrid.runner.surroundings import script_surroundings
from rgrid.runner.workdir import OutputScan, find_outputs
from rgrid.sandbox import bwrap, reads
from rgrid.text import printable

logger = logging.getLogger(__name__)

#: where the environment appears inside the bubblewrap sandbox
SANDBOX_ENV_PATH = Path("/opt/rgrid/env")
SANDBOX_HOME = "/tmp"
#: an execution takes one slot, and a worker has as many slots as CPUs (SPEC §14)
CPUS_PER_EXECUTION = 1.0


def _sandbox_env(
    user_env: dict[str, str], python_bin: Path, surroundings: dict[str, str]
) -> dict[str, str]:
    """A scrubbed environment: nothing of the grid's own; the user's time zone and locale
    (``runner.surroundings``), and the user's ``--env`` on top."""
    env = {
        "PATH": f"{python_bin}:/usr/local/bin:/usr/bin:/bin",
        "HOME": SANDBOX_HOME,
        "TMPDIR": "/tmp",
        **surroundings,
        # Output must reach the user line by line, as it would on a terminal.
        "PYTHONUNBUFFERED": "1",
        "PYTHONIOENCODING": "utf-8",
    }
    env.update(user_env)
    return env


def _sandbox_spec(
    spec: domain.ExecutionSpec,
    env: PythonEnv,
    layout: Layout,
    config: RunnerConfig,
    staged: Staged,
    surroundings: dict[str, str],
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
        env=_sandbox_env(spec.env, python.parent, surroundings),
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
        written_dirs=(
            (staged.overlay.upper, *(host for host, _ in layout.rw_binds()))
            if staged.overlay is not None
            else None
        ),
        workdir_ready=staged.overlay is not None,
        tmp_dir=layout.tmp,
        terminal=_terminal(spec.terminal),
    )


def _terminal(given: dict[str, Any] | None) -> sandbox.TerminalSpec | None:
    if not given:
        return None
    return sandbox.TerminalSpec(
        columns=int(given.get("columns", 80)),
        lines=int(given.get("lines", 24)),
        stdout=bool(given.get("stdout")),
        stderr=bool(given.get("stderr")),
    )


def stdin_path(workdir: Path) -> Path:
    """Where an execution's stdin is kept: beside its work directory, never in it, so the
    script neither sees it in its tree nor gets it back as an output."""
    return workdir.with_name(workdir.name + ".stdin")


@dataclasses.dataclass(frozen=True)
class Staged:
    """An execution's files in place, and where to look at them during and after the run."""

    #: the inputs' stamps where the run may change them in place (``work.Stamp``)
    stamps: dict[str, work.Stamp]
    #: where what the run wrote in the working directory is found
    scan_root: Path
    #: (input name, the file on this host that the script opens under that name)
    watched: list[tuple[str, Path]]
    #: the work directory is an overlay (``layers``): the tree below, shared and read-only
    overlay: mounts.Overlay | None = None
    #: the tree's layer below the overlay
    layer: layers.Layer | None = None


def _overlay_of(
    layout: Layout, box: sandbox.Sandbox, config: RunnerConfig
) -> mounts.Overlay | None:
    """The overlay the work directory will be, where it can be one: bubblewrap run by root
    with scripts dropped to an unprivileged user (who then owns the tree, as users own their
    files), and an operator who did not turn it off."""
    from rgrid.sandbox.bwrap import privilege_drop_available

    if not (
        config.overlay_inputs
        and layout.mounted
        and box.name == "bwrap"
        and privilege_drop_available()
        and mounts.available("overlay")
    ):
        return None
    workdir = layout.workdir
    return mounts.Overlay(
        lower=Path(),  # known once the tree's layer is
        upper=workdir.with_name(f"{workdir.name}.upper"),
        scratch=workdir.with_name(f"{workdir.name}.ovl"),
        merged=workdir,
    )


def _place(
    layout: Layout, root: Path, refs: list[domain.FileRef], dirs: tuple[str, ...]
) -> list[tuple[domain.FileRef, Path]]:
    """Make ``dirs`` under ``root`` and each input's parent; where each input goes (the
    working directory's under ``root``, the others in the mirror of their place)."""
    for folder in dirs:
        join_under(root, folder).mkdir(parents=True, exist_ok=True)
    placed = [
        (ref, layout.mirror(ref.path) if ref.path.startswith("/") else join_under(root, ref.path))
        for ref in refs
    ]
    for parent in {dest.parent for _, dest in placed}:
        parent.mkdir(parents=True, exist_ok=True)
    return placed


async def _fill(plane: ControlPlane, placed: list[tuple[domain.FileRef, Path]]) -> None:
    """Copy the inputs: in one go what the store vouches for, the rest one by one, verified."""
    done = await plane.copy_inputs(placed) if placed else []
    for (ref, dest), ready in zip(placed, done, strict=True):
        if not ready:
            await plane.fetch_input(ref, dest)


async def _stage(
    spec: domain.ExecutionSpec,
    plane: ControlPlane,
    layout: Layout,
    overlay: mounts.Overlay | None,
    stack: contextlib.AsyncExitStack,
    config: RunnerConfig,
) -> Staged:
    """Put the directories, inputs and stdin in place: copies in the work directory, or the
    tree's shared layer (built if new) under an overlay holding copies of the named inputs.
    (The file operations are grouped into few thread hops: each costs a wait for the event
    loop, which a busy grid makes long.)"""
    layer = None
    if overlay is not None and spec.tree is not None:
        tree, planned = spec.tree, overlay
        store = layers.Layers(config.work_root / layers.LAYERS_DIR, bwrap.SANDBOX_UID)

        def prepare_and_hold() -> tuple[list[tuple[domain.FileRef, Path]], layers.Layer | None]:
            placed = _prepare(layout, planned, list(spec.inputs), ())
            return placed, _hold(stack, store, tree.digest)

        placed, layer = await asyncio.to_thread(prepare_and_hold)
        if layer is None:
            layer = await _build_layer(plane, layout, tree, stack, store)
        overlay = dataclasses.replace(overlay, lower=layer.path)
    else:  # no overlay here, or no tree for a shared layer to hold (a lone script): copies
        overlay = None
        placed = await asyncio.to_thread(_prepare, layout, None, list(spec.all_inputs), spec.dirs)
    if spec.stdin is not None:
        if spec.stdin.size == 0:  # an empty stdin has no blob
            stdin_path(layout.workdir).write_bytes(b"")
        else:
            await plane.fetch_input(spec.stdin, stdin_path(layout.workdir))
    await _fill(plane, placed)
    named = [(ref.path, dest) for ref, dest in placed]
    stamps = await asyncio.to_thread(_ready, overlay, named)
    if overlay is None:
        return Staged(stamps, layout.workdir, named)
    return Staged(stamps, overlay.upper, named, overlay, layer)


def _prepare(
    layout: Layout,
    overlay: mounts.Overlay | None,
    refs: list[domain.FileRef],
    dirs: tuple[str, ...],
) -> list[tuple[domain.FileRef, Path]]:
    """The execution's directories (its /tmp mounted), and where each input goes: under the
    overlay's upper directory, or in the work directory."""
    layout.prepare()
    if layout.tmp is not None:
        _make_tmp(layout.tmp)
    if overlay is None:
        return _place(layout, layout.workdir, refs, dirs)
    for directory in (overlay.upper, overlay.scratch):
        directory.mkdir()
    return _place(layout, overlay.upper, refs, dirs)


def _ready(overlay: mounts.Overlay | None, named: list[tuple[str, Path]]) -> dict[str, work.Stamp]:
    """With the inputs in place: the overlay given to the sandbox's user and mounted; the
    inputs' stamps."""
    if overlay is not None:
        layers.give(overlay.upper, bwrap.SANDBOX_UID)
        overlay.mount()
    return work.stamps(named)


async def _build_layer(
    plane: ControlPlane,
    layout: Layout,
    tree: domain.Tree,
    stack: contextlib.AsyncExitStack,
    store: layers.Layers,
) -> layers.Layer:
    """The tree's layer, new: built now and held for the rest of the execution."""
    key = tree.digest
    # one more layer: once this one is released, the least recently used beyond KEEP go
    stack.push_async_callback(asyncio.to_thread, store.evict)
    scratch = await asyncio.to_thread(store.scratch)
    try:
        placed = await asyncio.to_thread(_place, layout, scratch, list(tree.files), tree.dirs)
        await _fill(plane, placed)
        return await asyncio.to_thread(store.publish, scratch, key)
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, scratch, True)
        raise


def _hold(stack: contextlib.AsyncExitStack, store: layers.Layers, key: str) -> layers.Layer | None:
    """Hold layer ``key`` for the rest of the execution, marked as just used; None if it is
    not built yet."""
    held = stack.enter_context(store.hold(key))
    if held is not None:
        store.touch(held)
    return held


async def _watch(
    spec: domain.ExecutionSpec,
    staged: Staged,
    box: sandbox.Sandbox,
    config: RunnerConfig,
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

    def watch() -> reads.Watch:  # in one thread hop: each costs the execution ms under load
        known = None
        if staged.layer is not None and spec.tree is not None:
            known = _tree_handles(observer, staged.layer, spec.tree)
        return observer.watch(staged.scan_root, staged.watched, known)

    try:
        return await asyncio.to_thread(watch)
    except OSError as exc:
        logger.warning(
            "reads of %s not observed: %s",
            spec.execution_id,
            exc,
            extra={"action": "reads_unobserved", "execution_id": spec.execution_id},
        )
        return None


#: the file handles of recently used layers' files, by (layer, the layer directory's own
#: handle: a layer removed and built again has new files, and so a new handle)
_TREE_HANDLES: collections.OrderedDict[tuple[str, bytes], dict[bytes, list[str]]] = (
    collections.OrderedDict()
)


def _tree_handles(
    observer: reads.ReadObserver, layer: layers.Layer, tree: domain.Tree
) -> dict[bytes, list[str]]:
    """The handles of a layer's files (``reads.file_handles``), taken once per layer: a
    layer never changes, and taking 2,000 of them costs tens of ms."""
    key = (layer.key, observer.handle_of(layer.path))
    handles = _TREE_HANDLES.get(key)
    if handles is None:
        handles = observer.handles((ref.path, layer.path / ref.path) for ref in tree.files)
        _TREE_HANDLES[key] = handles
        while len(_TREE_HANDLES) > layers.KEEP:
            _TREE_HANDLES.popitem(last=False)
    _TREE_HANDLES.move_to_end(key)
    return handles


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
    staged: Staged,
) -> OutputScan:
    """What the run produced; each file the grid cannot name gets a warning in the log, and
    files written outside the working directory but not where an argument named get one too.
    Over an overlay only its upper layer is looked at: nothing else can have changed."""
    inputs = {ref.path: ref for ref in spec.inputs}
    tree = spec.tree
    dirs_before = work.existing_dirs(inputs, () if tree is None else tree.dirs)

    def look() -> tuple[OutputScan, OutsideScan, list[str]]:
        # the three looks in one thread hop: under load each hop costs the execution ms
        scan = find_outputs(
            staged.scan_root,
            inputs if tree is None else collections.ChainMap(inputs, tree.by_path),
            max_bytes=config.max_output_bytes,
            max_files=config.max_output_files,
            skip_top=frozenset() if layout.mounted else frozenset({FALLBACK_DIR}),
            placed=staged.stamps,
            dirs_before=dirs_before if tree is None else dirs_before | tree.all_dirs,
        )
        in_tmp = left_in_tmp(layout.tmp) if layout.tmp is not None else []
        return scan, scan_outside(layout, inputs), in_tmp

    scan, outside, in_tmp = await asyncio.to_thread(look)
    for name, why in scan.refused:
        shipper.system(f"warning: output {printable(name)} not kept: {why}")
    if (warning := elsewhere_warning([*outside.elsewhere, *in_tmp])) is not None:
        shipper.system(printable(warning))
    return dataclasses.replace(scan, files=[*scan.files, *outside.files])


async def _collect(
    scan: OutputScan, plane: ControlPlane, outcome: domain.Outcome
) -> domain.Outcome:
    outputs = tuple(await plane.store_outputs(scan.files) if scan.files else ())
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
    overlay = _overlay_of(layout, box, config)
    if spec.attempt > 1:  # what an attempt that crashed on this host may have left
        await asyncio.to_thread(_clear, layout, overlay)
    async with contextlib.AsyncExitStack() as stack:
        if not config.keep_workdirs:
            stack.push_async_callback(_clear_in_a_thread, layout, overlay)
        else:  # kept for a look, but never left mounted
            stack.push_async_callback(asyncio.to_thread, _unmount, layout, overlay)
        try:
            staged = await _stage(spec, plane, layout, overlay, stack, config)
        except errors.RgridError as exc:
            return domain.Outcome(
                ExecutionState.FAILED,
                domain.EXIT_RGRID_FAILURE,
                FailureClass.INPUT_ERROR,
                cause=f"an input could not be prepared: {exc.message}",
            )
        return await _run_staged(spec, plane, config, cancel, box, layout, staged)


def _make_tmp(tmp: Path) -> None:
    tmp.mkdir()
    mounts.mount_tmpfs(tmp)


def _unmount(layout: Layout, overlay: mounts.Overlay | None) -> None:
    if overlay is not None:
        overlay.unmount()
    if layout.tmp is not None:
        mounts.unmount(layout.tmp)


async def _clear_in_a_thread(layout: Layout, overlay: mounts.Overlay | None) -> None:
    """``_clear(…, later=True)`` in a thread: undoing the mounts is syscalls that wait on the
    kernel, which on the event loop held up every other execution's work and request. Handed
    to the thread at once and shielded: a second cancel while it runs leaves it to finish."""
    clearing = asyncio.get_running_loop().run_in_executor(
        None, functools.partial(_clear, layout, overlay, later=True)
    )
    await asyncio.shield(clearing)


def _clear(layout: Layout, overlay: mounts.Overlay | None, *, later: bool = False) -> None:
    """Remove the execution's directories (its mounts undone first). ``later``: moved aside
    at once (a retry on this host finds the names free) and deleted by a thread of their own,
    so that the outcome is not held up by the deleting."""
    _unmount(layout, overlay)
    extra = (overlay.upper, overlay.scratch) if overlay is not None else ()
    tmp = (layout.tmp,) if layout.tmp is not None else ()
    doomed = [layout.workdir, layout.outside, *extra, *tmp]
    stdin_path(layout.workdir).unlink(missing_ok=True)
    if later:
        doomed = [trash for path in doomed if (trash := _set_aside(path)) is not None]
        threading.Thread(target=_remove, args=(doomed,), name="rgrid-clear", daemon=True).start()
    else:
        _remove(doomed)


#: what ``_clear`` set aside to delete is named so (what a stopped grid left is deleted when
#: the next execution's directories are cleared)
TRASH_PREFIX = ".trash-"


def _set_aside(path: Path) -> Path | None:
    trash = path.with_name(f"{TRASH_PREFIX}{uuid.uuid4().hex}")
    try:
        path.rename(trash)
    except FileNotFoundError:
        return None
    except OSError:  # not renamable (still a mount point?): deleted where it is
        return path
    return trash


def _remove(paths: list[Path]) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def remove_abandoned(work_root: Path) -> None:
    """Delete what a stopped grid set aside but had not deleted yet (a worker starting)."""
    try:
        entries = [e for e in os.scandir(work_root) if e.name.startswith(TRASH_PREFIX)]
    except FileNotFoundError:
        return
    _remove([Path(e.path) for e in entries])


def _refused(failure: FailureClass, exc: errors.RgridError) -> domain.Outcome:
    """The outcome of an execution the grid could not run: its error's message and hint."""
    return domain.Outcome(
        ExecutionState.FAILED,
        domain.EXIT_RGRID_FAILURE,
        failure,
        cause=exc.message,
        hint=exc.hint,
    )


async def _run_staged(
    spec: domain.ExecutionSpec,
    plane: ControlPlane,
    config: RunnerConfig,
    cancel: asyncio.Event,
    box: sandbox.Sandbox,
    layout: Layout,
    staged: Staged,
) -> domain.Outcome:
    """Environment, sandbox, logs, outcome, outputs: the execution once its files are there."""
    interpreter = config.interpreters[spec.python or config.default_python]
    shipper = LogShipper(
        plane,
        attempt=spec.attempt,
        start_seq=spec.log_seq_start,
        max_bytes=config.max_log_bytes,
    )
    async with shipper:
        surroundings, warnings = await asyncio.to_thread(
            script_surroundings, spec.time_zone, spec.locale, spec.terminal
        )
        for warning in warnings:
            shipper.system(warning)
        try:
            async with config.env_cache.environment(
                spec.requirements, interpreter, shipper.setup
            ) as env:
                result, observed = await _run_observed(
                    box,
                    _sandbox_spec(spec, env, layout, config, staged, surroundings),
                    await _watch(spec, staged, box, config),
                    shipper,
                    cancel,
                )
        except errors.UnsafePath as exc:
            return _refused(FailureClass.INPUT_ERROR, exc)
        except errors.DependencyError as exc:
            return _refused(FailureClass.DEPENDENCY_ERROR, exc)
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
            env_built=env.built_now,
            network_used=result.network_used,
        )
        if outcome.state is ExecutionState.CANCELLED:
            return outcome
        if outcome.failure_class is FailureClass.DISK_LIMIT:
            return outcome  # keeping what filled the disk would only move it into storage
        scan = await _scan(spec, layout, config, shipper, staged)
    return await _collect(scan, plane, outcome)
