"""What `rgrid run` does once its command line is parsed: submit, follow, download, exit with
the script's code. No click here: the click command (``rgrid.cli.run``) and the quick path
(``rgrid.cli.quick``, for `rgrid run SCRIPT ARGS...` without options) both call ``run_script``."""

from __future__ import annotations

import contextlib
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from rgrid import errors, schemas
from rgrid.cli import render

if TYPE_CHECKING:
    from collections.abc import Iterator

    from rgrid.client import Client
    from rgrid.client.bundle import Bundle, LocalFile
    from rgrid.client.runs import Downloads

MANIFEST_NOTICE_FILES = 50
MANIFEST_NOTICE_BYTES = 20 * 1000**2
MAX_UPLOAD_BYTES = 2 * 1024**3  # above this, --yes is required
SECOND_INTERRUPT_S = 2.0
STDIN_NOTICE = (
    "reading stdin to give it to the script (nothing came yet); "
    "if it reads none, run it with `< /dev/null`"
)
#: stderr lines kept to recognise a script rejecting rgrid options given after it
STDERR_TAIL_LINES = 20

#: what each option of `rgrid run` is when not given (the click command's defaults, as
#: parsed; a test holds them equal); env and metadata are the parsed K=V pairs
DEFAULTS: dict[str, Any] = {
    "env": {},
    "metadata": {},
    "timeout": 3600.0,
    "memory": 2 * 1024**3,
    "disk": 10 * 1024**3,
    "requirements_file": None,
    "runtime": None,
    "max_retries": 2,
    "network": True,
    "include": (),
    "output_dir": None,
    "remote_only": False,
    "detach": False,
    "patterns": (),
    "parallel": 10,
    "flat": False,
    "as_json": False,
    "cache_mode": None,
    "no_cache": False,
    "yes": False,
}


def run_script(
    script_arg: str,
    args: tuple[str, ...],
    *,
    env: dict[str, str],
    metadata: dict[str, str],
    timeout: float,
    memory: int,
    disk: int,
    requirements_file: Path | None,
    runtime: str | None,
    max_retries: int,
    network: bool,
    include: tuple[Path, ...],
    output_dir: Path | None,
    remote_only: bool,
    detach: bool,
    patterns: tuple[str, ...],
    parallel: int,
    flat: bool,
    as_json: bool,
    cache_mode: str | None,
    no_cache: bool,
    yes: bool,
) -> None:
    """Run ``script_arg`` with ``args`` on the grid (``env`` and ``metadata`` already parsed);
    exits with the script's code when it is not 0."""
    from rgrid import bounds
    from rgrid.client import surroundings
    from rgrid.client.config import project_cache_mode, project_settings

    project = project_settings()
    cache = "off" if no_cache else cache_mode or project_cache_mode(project)
    bounds.check_env(env)  # the grid's own checks, before anything is uploaded
    bounds.check_metadata(metadata)
    # what a run and a batch submission share (schemas.ExecutionCreate, schemas.BatchCreate)
    options: dict[str, Any] = {
        "env": env,
        "metadata": metadata,
        "timeout_s": timeout,
        "memory_bytes": memory,
        "disk_bytes": disk,
        "network": network,
        "runtime": runtime,
        "max_retries": max_retries,
        "cache": cache != "off",
        "cache_always": cache == "always",
        "surroundings": surroundings.detect(),
    }
    where = Place(output_dir, remote_only, detach)
    if patterns:
        batch = BatchChoices(patterns, parallel, flat, as_json)
        code = _run_batch(
            script_arg, args, batch, include, project, requirements_file, options, where
        )
    else:
        code = _run_one(script_arg, args, include, project, requirements_file, options, where, yes)
    if code is not None:
        sys.exit(code)


class Place(NamedTuple):
    """Where the results go: ``output_dir`` (default: here), or nowhere (``remote_only``);
    with ``detach`` nothing is followed at all."""

    output_dir: Path | None
    remote_only: bool
    detach: bool


class BatchChoices(NamedTuple):
    patterns: tuple[str, ...]
    parallel: int
    flat: bool
    as_json: bool


def _run_batch(
    script_arg: str,
    args: tuple[str, ...],
    choices: BatchChoices,
    include: tuple[Path, ...],
    project: dict[str, Any],
    requirements_file: Path | None,
    options: dict[str, Any],
    where: Place,
) -> int | None:
    """Submit one execution per matching file and follow them all; the exit code (None when
    detached: the batch id was printed)."""
    from rgrid.cli import batch
    from rgrid.cli.context import connect
    from rgrid.client.bundle import build_bundle
    from rgrid.client.requirements import plan
    from rgrid.client.stdin import refuse_for_batch

    script = Path(script_arg)
    refuse_for_batch()
    deps = plan(script, requirements_file, build_bundle(script, [], []).modules)
    options = {
        **options,
        "parallel": choices.parallel,
        "requirements": deps.requirements,
        "dependency_source": deps.source,
    }
    client = connect()
    batch_id = batch.submit(
        client, script, list(args), list(choices.patterns), list(include), options, project
    )
    if where.detach:
        render.echo(batch_id)
        return None
    return batch.attach(
        client,
        batch_id,
        output_dir=where.output_dir,
        flat=choices.flat,
        remote_only=where.remote_only,
        as_json=choices.as_json,
        explain=lambda causes: _misplaced(script, args, causes),
    )


def _run_one(
    script_arg: str,
    args: tuple[str, ...],
    include: tuple[Path, ...],
    project: dict[str, Any],
    requirements_file: Path | None,
    options: dict[str, Any],
    where: Place,
    yes: bool,
) -> int | None:
    """Send the script, its files and stdin, submit, then follow it to the end and fetch its
    outputs; the script's exit code (None when detached: the id was printed)."""
    from rgrid.cli.context import connect
    from rgrid.client.bundle import project_bundle
    from rgrid.client.requirements import plan

    script = Path(script_arg)  # script_arg stays as typed: it is the script's sys.argv[0]
    bundle = project_bundle(script, args, include, project=project, argv0=script_arg)
    for line in render.tree_notices(bundle.tree_report):
        render.info(line)
    deps = plan(script, requirements_file, bundle.modules)
    options = {**options, "requirements": deps.requirements, "dependency_source": deps.source}
    if not where.detach:  # its output comes to this terminal: the script writes to one too
        from rgrid.client.surroundings import terminal

        options["surroundings"] = schemas.replace(options["surroundings"], terminal=terminal())
    with _piped_stdin() as stdin:
        _confirm_size(len(bundle.files), bundle.total_bytes + (stdin.size if stdin else 0), yes)
        client = connect()
        execution = _submit_one(client, bundle, stdin, options)
    if deps.requirements:
        render.info(f"dependencies ({deps.source}): {', '.join(deps.requirements)}")
    if execution.cached_from:
        render.info(
            f"cached: the same script, inputs, arguments, environment and dependencies "
            f"succeeded as {execution.cached_from}; its result is reused (--no-cache runs it again)"
            + ("; it used the network (--cache always)" if execution.network_used else "")
        )
    elif execution.cache and "not reused" in execution.cache:
        # an identical run succeeded but is not reused (it used the network): say why this runs
        render.info(f"running it again: {execution.cache.removeprefix('miss: ')}")
    if where.detach:
        render.echo(execution.id)
        render.info(f"follow it with `rgrid logs {execution.id} --follow`")
        return None
    return attach(
        client,
        execution.id,
        output_dir=where.output_dir,
        remote_only=where.remote_only,
        finished=execution if execution.state.terminal else None,
        explain=lambda tail: _misplaced(script, args, tail),
    )


def _submit_one(
    client: Client,
    bundle: Bundle,
    stdin: LocalFile | None,
    options: dict[str, Any],
) -> schemas.ExecutionPublic:
    """Submit the run, sending the contents of its files and its project tree if the grid
    says it lacks them; says what was uploaded."""
    from rgrid.client import idempotency_key
    from rgrid.client.runs import UploadReport, submit_with_tree

    spec = schemas.ExecutionCreate(
        script=bundle.script,
        args=bundle.args,
        files=[
            schemas.FileIn(path=f.rel, digest=f.digest, size=f.size) for f in bundle.named_files
        ],
        tree=bundle.tree_digest,
        idempotency_key=idempotency_key(),
        stdin=schemas.StdinIn(digest=stdin.digest, size=stdin.size) if stdin else None,
        cwd=bundle.cwd,
        argv0=bundle.argv0,
        mount_roots=bundle.mount_roots,
        named_outside=bundle.named_outside,
        **options,
    )
    unsent = [*bundle.named_files, *([stdin] if stdin and stdin.size else [])]
    execution, report = submit_with_tree(
        client, bundle, lambda: client.submit(spec), UploadReport(0, 0, 0), unsent
    )
    render.tree_debug(bundle.tree_digest, report.tree_sent)
    if execution.warning:
        render.info(f"warning: {execution.warning}")
    render.info(
        render.upload_report(report.uploaded_files, report.uploaded_bytes, report.already_there)
    )
    return execution


@contextlib.contextmanager
def _piped_stdin() -> Iterator[LocalFile | None]:
    """rgrid's stdin spooled for the script, or None on a terminal (the script gets EOF)."""
    from rgrid.client import stdin

    if not stdin.is_piped():
        yield None
        return
    with stdin.spooled(on_quiet=lambda: render.info(STDIN_NOTICE)) as spooled:
        yield spooled


def _misplaced(script: Path, args: tuple[str, ...], stderr_tail: list[str]) -> str | None:
    from rgrid.cli.grammar import long_options, misplaced_hint
    from rgrid.cli.run import run  # click's command: only when a script failed

    typed = sys.argv[1:]  # the command as typed, to repeat it with the options moved
    if not args or tuple(typed[-len(args) :]) != args:
        typed = ["run", str(script), *args]
    return misplaced_hint(long_options(run), typed, len(args), stderr_tail)


def _confirm_size(files: int, total: int, yes: bool) -> None:
    if files >= MANIFEST_NOTICE_FILES or total >= MANIFEST_NOTICE_BYTES:
        # before the grid says what it lacks: most of a re-run's tree is there already
        render.info(f"checking {files} files ({render.size(total)}) against the grid")
    if total > MAX_UPLOAD_BYTES and not yes:
        raise errors.UsageError(
            f"the upload is {render.size(total)}, over {render.size(MAX_UPLOAD_BYTES)}; "
            "pass --yes to send it anyway"
        )


def attach(
    client: Client,
    execution_id: str,
    *,
    output_dir: Path | None,
    remote_only: bool,
    finished: schemas.ExecutionPublic | None = None,
    explain: Callable[[list[str]], str | None] | None = None,
) -> int:
    """Stream logs until the end, download outputs, print the summary; returns the exit code.
    ``finished``: the execution, already ended when submitted (a cache hit): its log is read
    in one request instead of streamed. ``explain``: given the last stderr lines of a script
    that failed, a hint to show, if any."""
    from rgrid.client.runs import download_outputs, ended_log, exit_code_for, follow

    stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)

    def show(lines: list[schemas.LogLinePublic]) -> None:
        render.log_lines(lines, marked=False)
        stderr_tail.extend(line.text for line in lines if line.stream.value == "stderr")

    outputs = None
    if finished is not None:
        # one request: the log's last page brings the outputs too (an older grid's: not)
        lines, last = ended_log(client, execution_id)
        show(lines)
        final = last.execution or finished
        outputs = last.outputs
    else:
        try:
            last = follow(client, execution_id, show, on_notice=render.info)
        except KeyboardInterrupt:
            return _detach_or_cancel(client, execution_id)
        # the stream's last page brings the ended execution and its outputs (older grids: not)
        final = last.execution or client.get(execution_id)
        outputs = last.outputs
    downloads = None
    if not remote_only:
        downloads = download_outputs(
            client, execution_id, output_dir or Path.cwd(), execution=final, outputs=outputs
        )
        for artifact, why in downloads.skipped:
            render.not_downloaded(artifact.path, why)
    _summary(final, downloads)
    code = exit_code_for(final)
    hint = explain(list(stderr_tail)) if explain and code and final.exit_code else None
    if hint:
        render.info(f"hint: {hint}")
    return code


def _summary(final: schemas.ExecutionPublic, downloads: Downloads | None) -> None:
    files = ""
    if downloads and downloads.fetched:
        sizes = sum(a.size for a, _ in downloads.fetched)
        files = f", {len(downloads.fetched)} output(s) downloaded ({render.size(sizes)})"
    if downloads and downloads.unchanged:
        files += f", {len(downloads.unchanged)} already in place"
    if final.cost_micros is not None:
        files += f", {render.cost_amount(final)}"
    render.info(
        f"{final.id} {render.state_label(final)} in {render.duration(final.duration_s)}{files}"
    )
    if final.cause and final.state.value != "succeeded":
        render.info(f"cause: {final.cause}")
    if final.hint:
        render.info(f"hint: {final.hint}")


def _detach_or_cancel(client: Client, execution_id: str) -> int:
    render.info(
        f"detached; {execution_id} keeps running. Re-attach: `rgrid wait {execution_id}`; "
        "press Ctrl-C again within 2 s to cancel it"
    )
    try:
        time.sleep(SECOND_INTERRUPT_S)
    except KeyboardInterrupt:
        import click  # asked only here, after a second Ctrl-C

        if click.confirm(f"cancel {execution_id}?", default=False, err=True):
            client.cancel(execution_id)
            render.info(f"cancelled {execution_id}")
    return 130
