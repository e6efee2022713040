"""``rgrid run SCRIPT [ARGS]...``: run once on the grid, as if with python here."""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import click

from rgrid.cli import render

if TYPE_CHECKING:
    from rgrid import schemas
    from rgrid.client import Client
    from rgrid.client.runs import Downloads
from rgrid.cli.options import Duration, Size, key_values

MANIFEST_NOTICE_FILES = 50
MANIFEST_NOTICE_BYTES = 20 * 1000**2
MAX_UPLOAD_BYTES = 2 * 1024**3  # above this, --yes is required
SECOND_INTERRUPT_S = 2.0


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": True},
    epilog="Options rgrid does not know are passed to the script; put the script's own options "
    "after `--` when they clash with rgrid's (rgrid run s.py -- --timeout 5).",
)
@click.argument("script", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option(
    "--env",
    "env",
    multiple=True,
    metavar="K=V",
    help="Environment variable (K alone: this shell's value); at most 32 KiB a value.",
)
@click.option("--metadata", multiple=True, metavar="K=V", help="Label for `rgrid list --metadata`.")
@click.option(
    "--timeout",
    type=Duration(),
    default="1h",
    show_default=True,
    envvar="RGRID_TIMEOUT",
    help="Wall-clock limit [RGRID_TIMEOUT].",
)
@click.option(
    "--memory",
    type=Size(),
    default="2GiB",
    show_default=True,
    envvar="RGRID_MEMORY",
    help="Memory limit [RGRID_MEMORY].",
)
@click.option(
    "--disk",
    type=Size(),
    default="10GiB",
    show_default=True,
    envvar="RGRID_DISK",
    help="What the script's working directory may hold [RGRID_DISK].",
)
@click.option(
    "--requirements",
    "requirements_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Requirements file (default: PEP 723 header, requirements.txt beside the script, else inferred from imports).",
)
@click.option(
    "--runtime",
    envvar="RGRID_RUNTIME",
    metavar="NAME",
    help="Python and preset, e.g. python3.12 or python3.11:datascience [RGRID_RUNTIME].",
)
@click.option(
    "--max-retries",
    type=click.IntRange(0, 10),
    default=2,
    show_default=True,
    envvar="RGRID_MAX_RETRIES",
    help="Automatic retries after the grid (not the script) failed [RGRID_MAX_RETRIES].",
)
@click.option("--network/--no-network", default=True, show_default=True, help="Network access.")
@click.option(
    "--include",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Extra file or directory to send.",
)
@click.option(
    "--output-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where outputs go (default: here).",
)
@click.option("--remote-only", is_flag=True, help="Keep outputs on the grid; download nothing.")
@click.option("--detach", is_flag=True, help="Submit, print the id, return.")
@click.option(
    "--batch",
    "patterns",
    multiple=True,
    metavar="GLOB",
    help="One execution per matching file (repeatable; ** recurses); the file is appended to ARGS or replaces {}.",
)
@click.option(
    "--parallel",
    type=click.IntRange(min=1, max=1000),
    default=10,
    show_default=True,
    help="With --batch: at most N at once (enforced by the grid).",
)
@click.option(
    "--flat",
    is_flag=True,
    help="With --batch: all outputs in one folder (<stem>__<name> when names collide).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="With --batch: one JSON object per state change, and a summary.",
)
@click.option(
    "--no-cache",
    is_flag=True,
    help="Run even if an identical earlier run succeeded (its result is reused otherwise; "
    "`cache = false` in .rgrid/config.toml turns that off for a project).",
)
@click.option("--yes", is_flag=True, help="Skip confirmations (large uploads).")
def run(
    script: Path,
    args: tuple[str, ...],
    env: tuple[str, ...],
    metadata: tuple[str, ...],
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
    no_cache: bool,
    yes: bool,
) -> None:
    """Run SCRIPT with ARGS on the grid: live output, outputs downloaded, the script's exit code."""
    from rgrid import bounds, schemas
    from rgrid.cli.context import connect
    from rgrid.client.bundle import build_bundle, project_bundle
    from rgrid.client.config import project_settings
    from rgrid.client.requirements import plan
    from rgrid.client.runs import upload_bundle

    project = project_settings()
    use_cache = not no_cache and project.get("cache", True) is True
    env_values = key_values(env, "--env", local_fallback=True)
    labels = key_values(metadata, "--metadata")
    bounds.check_env(env_values)  # the grid's own checks, before anything is uploaded
    bounds.check_metadata(labels)
    if patterns:
        from rgrid.cli import batch

        deps = plan(script, requirements_file, build_bundle(script, [], []).modules)
        options = {
            "parallel": parallel,
            "env": env_values,
            "metadata": labels,
            "timeout_s": timeout,
            "memory_bytes": memory,
            "disk_bytes": disk,
            "network": network,
            "requirements": deps.requirements,
            "dependency_source": deps.source,
            "runtime": runtime,
            "max_retries": max_retries,
            "cache": use_cache,
        }
        client = connect()
        batch_id = batch.submit(
            client, script, list(args), list(patterns), list(include), options, project
        )
        if detach:
            click.echo(batch_id)
            return
        sys.exit(
            batch.attach(
                client,
                batch_id,
                output_dir=output_dir,
                flat=flat,
                remote_only=remote_only,
                as_json=as_json,
            )
        )
    bundle = project_bundle(script, args, include, project=project)
    for line in render.tree_notices(bundle.tree_report):
        render.info(line)
    deps = plan(script, requirements_file, bundle.modules)
    _confirm_size(len(bundle.files), bundle.total_bytes, yes)
    client = connect()
    report = upload_bundle(client, bundle)
    spec = schemas.ExecutionCreate(
        script=bundle.script,
        args=bundle.args,
        files=[
            schemas.FileIn(path=f.rel, sha256=f.sha256, size=f.size, tree=f.tree)
            for f in bundle.files
        ],
        dirs=bundle.dirs,
        env=env_values,
        metadata=labels,
        timeout_s=timeout,
        memory_bytes=memory,
        disk_bytes=disk,
        network=network,
        idempotency_key=str(uuid.uuid4()),
        requirements=deps.requirements,
        dependency_source=deps.source,
        runtime=runtime,
        max_retries=max_retries,
        cache=use_cache,
    )
    execution = client.submit(spec)
    if execution.warning:
        render.info(f"warning: {execution.warning}")
    render.info(
        render.upload_report(report.uploaded_files, report.uploaded_bytes, report.already_there)
    )
    if deps.requirements:
        render.info(f"dependencies ({deps.source}): {', '.join(deps.requirements)}")
    if execution.cached_from:
        render.info(
            f"cached: the same script, inputs, arguments, environment and dependencies "
            f"succeeded as {execution.cached_from}; its result is reused (--no-cache runs it again)"
        )
    if detach:
        click.echo(execution.id)
        render.info(f"follow it with `rgrid logs {execution.id} --follow`")
        return
    sys.exit(
        attach(
            client,
            execution.id,
            output_dir=output_dir,
            remote_only=remote_only,
            finished=execution if execution.state.terminal else None,
        )
    )


def _confirm_size(files: int, total: int, yes: bool) -> None:
    if files >= MANIFEST_NOTICE_FILES or total >= MANIFEST_NOTICE_BYTES:
        render.info(f"sending {files} files ({render.size(total)})")
    if total > MAX_UPLOAD_BYTES and not yes:
        raise click.UsageError(
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
) -> int:
    """Stream logs until the end, download outputs, print the summary; returns the exit code.
    ``finished``: the execution, already ended when submitted (a cache hit): its log is read
    in one request instead of streamed."""
    from rgrid.client.runs import download_outputs, exit_code_for, follow, history

    if finished is not None:
        lines, _, _ = history(client, execution_id)
        render.log_lines(lines, marked=False)
        final = finished
    else:
        try:
            follow(
                client,
                execution_id,
                lambda lines: render.log_lines(lines, marked=False),
                on_notice=render.info,
            )
        except KeyboardInterrupt:
            return _detach_or_cancel(client, execution_id)
        final = client.get(execution_id)
    downloads = None
    if not remote_only:
        downloads = download_outputs(
            client, execution_id, output_dir or Path.cwd(), dirs=final.output_dirs
        )
        for artifact, why in downloads.skipped:
            render.not_downloaded(artifact.path, why)
    _summary(final, downloads)
    return exit_code_for(final)


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
        if click.confirm(f"cancel {execution_id}?", default=False, err=True):
            client.cancel(execution_id)
            render.info(f"cancelled {execution_id}")
    return 130


COMMANDS = [run]
