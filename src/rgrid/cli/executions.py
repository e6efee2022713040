"""``rgrid status|logs|outputs|download|list|wait|cancel``: look at and steer executions."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from rgrid.cli import render, views
from rgrid.cli.options import key_values, utc_time

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
STATES = ["queued", "running", "retrying", "succeeded", "failed", "cancelled"]


@click.command()
@click.argument("execution_id", metavar="ID")
@click.option("--watch", is_flag=True, help="A batch: follow it to the end, downloading outputs.")
@click.option(
    "--output-dir", type=click.Path(path_type=Path, file_okay=False), help="With --watch."
)
@json_option
def status(execution_id: str, watch: bool, output_dir: Path | None, as_json: bool) -> None:
    """State, times, worker, exit code and failure of an execution, or the progress of a batch."""
    views.status(execution_id, watch=watch, output_dir=output_dir, as_json=as_json)


@click.command()
@click.argument("execution_id")
@click.option("--follow", "-f", is_flag=True, help="Keep streaming until the execution ends.")
@click.option("--tail", type=click.IntRange(min=1), help="Only the last N lines.")
@click.option("--stdout-only", is_flag=True, help="Only the script's stdout.")
@click.option("--stderr-only", is_flag=True, help="Only the script's stderr.")
@click.option("--timestamps", is_flag=True, help="Prefix each line with its time.")
@click.option("--attempt", type=click.IntRange(min=1), help="Only the lines of attempt K.")
@click.option("--raw", is_flag=True, help="No out|/err| marks: stdout to stdout, stderr to stderr.")
@json_option
def logs(
    execution_id: str,
    follow: bool,
    tail: int | None,
    stdout_only: bool,
    stderr_only: bool,
    timestamps: bool,
    attempt: int | None,
    raw: bool,
    as_json: bool,
) -> None:
    """The execution's output lines in order (out| stdout, err| stderr, rgrid| and setup| rgrid's
    own); with --follow, then live until it ends."""
    from rgrid.cli.context import connect
    from rgrid.client.runs import follow as follow_logs
    from rgrid.client.runs import history

    if stdout_only and stderr_only:
        raise click.UsageError("--stdout-only and --stderr-only exclude each other")
    client = connect()
    wanted = {"stdout"} if stdout_only else {"stderr"} if stderr_only else None
    lines, last_seq, done = history(
        client, execution_id, tail=tail, streams=wanted, attempt=attempt
    )
    if as_json:
        render.emit_json(lines)
        return
    render.log_lines(lines, marked=not raw, timestamps=timestamps)
    if follow and not done:
        final = follow_logs(
            client,
            execution_id,
            lambda batch: render.log_lines(
                [line for line in batch if wanted is None or line.stream.value in wanted],
                marked=not raw,
                timestamps=timestamps,
            ),
            after=last_seq,
            on_notice=render.info,
        )
        render.info(f"{execution_id}: {final.state.value}, exit code {final.exit_code}")


@click.command()
@click.argument("execution_id")
@json_option
def outputs(execution_id: str, as_json: bool) -> None:
    """The output files of an execution."""
    from rgrid.cli.context import connect

    items = connect().artifacts(execution_id, kind="output").data
    render.emit_json(items) if as_json else render.artifact_table(items)


@click.command()
@click.argument("execution_id")
@click.option(
    "--output-dir", type=click.Path(path_type=Path, file_okay=False), help="Default: here."
)
@click.option(
    "--file", "files", multiple=True, metavar="NAME", help="Only this output (repeatable)."
)
def download(execution_id: str, output_dir: Path | None, files: tuple[str, ...]) -> None:
    """Download an execution's outputs, keeping their relative paths. An output this file
    system cannot hold (a directory in the way, a name it refuses) is skipped with a warning
    while the others download; the exit code is then 1."""
    from rgrid.cli.context import connect
    from rgrid.client.runs import download_outputs

    downloads = download_outputs(
        connect(), execution_id, output_dir or Path.cwd(), list(files) or None
    )
    for artifact, path in downloads.fetched:
        render.info(f"{path} ({render.size(artifact.size)})")
    for _, path in downloads.unchanged:
        render.info(f"{path} (already there, unchanged)")
    for artifact, why in downloads.skipped:
        render.not_downloaded(artifact.path, why)
    render.info(f"{len(downloads.fetched)} file(s) downloaded")
    if downloads.skipped:
        sys.exit(1)


@click.command(name="list")
@click.option(
    "--status", "states", multiple=True, type=click.Choice(STATES), help="Only these states."
)
@click.option("--metadata", multiple=True, metavar="K=V", help="Only executions with this label.")
@click.option(
    "--since",
    metavar="ISO-TIME",
    help="Only executions created after this time (local if no zone).",
)
@click.option("--batch", "batch_id", metavar="ID", help="Only the items of this batch.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@json_option
def list_(
    states: tuple[str, ...],
    metadata: tuple[str, ...],
    since: str | None,
    batch_id: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Your executions, newest first."""
    from rgrid.cli.context import connect

    page = connect().list(
        states=list(states),
        metadata=key_values(metadata, "--metadata"),
        since=utc_time(since, "--since"),
        limit=limit,
        batch=batch_id,
    )
    render.emit_json(page) if as_json else render.execution_table(page.data)


@click.command()
@click.argument("execution_id")
@click.option(
    "--output-dir", type=click.Path(path_type=Path, file_okay=False), help="Default: here."
)
@click.option("--remote-only", is_flag=True, help="Download nothing.")
@click.option("--flat", is_flag=True, help="A batch: all outputs in one folder.")
def wait(execution_id: str, output_dir: Path | None, remote_only: bool, flat: bool) -> None:
    """Stream an execution's output until it ends, download its outputs, exit with its code;
    for a batch: follow it, download what is missing, exit 0 / 1 all failed / 3 some failed."""
    from rgrid.cli.context import connect
    from rgrid.cli.running import attach

    client = connect()
    if views.is_batch(execution_id):
        from rgrid.cli import batch

        sys.exit(
            batch.attach(
                client,
                execution_id,
                output_dir=output_dir,
                flat=flat,
                remote_only=remote_only,
                as_json=False,
            )
        )
    execution = client.get(execution_id)
    sys.exit(attach(client, execution.id, output_dir=output_dir, remote_only=remote_only))


@click.command()
@click.argument("execution_id")
@json_option
def cancel(execution_id: str, as_json: bool) -> None:
    """Cancel a queued or running execution (its whole process group is killed), or every
    unfinished item of a batch."""
    from rgrid.cli.context import connect

    if views.is_batch(execution_id):
        batch = connect().cancel_batch(execution_id)
        render.emit_json(batch) if as_json else render.info(
            f"{batch.id}: cancel requested for its unfinished items"
        )
        return
    execution = connect().cancel(execution_id)
    if as_json:
        render.emit_json(execution)
    else:
        render.info(f"{execution.id}: cancel requested ({execution.state.value})")


@click.command()
@click.argument("execution_id", required=False)
@click.option("--batch", "batch_id", metavar="ID", help="Retry items of this batch.")
@click.option(
    "--failed-only", is_flag=True, help="With --batch: only failed items (not cancelled)."
)
@click.option("--force", is_flag=True, help="Also re-run one that succeeded or is still running.")
@click.option("--detach", is_flag=True, help="Print the new id and return.")
@click.option(
    "--output-dir", type=click.Path(path_type=Path, file_okay=False), help="Default: here."
)
@click.option("--remote-only", is_flag=True, help="Download nothing.")
def retry(
    execution_id: str | None,
    batch_id: str | None,
    failed_only: bool,
    force: bool,
    detach: bool,
    output_dir: Path | None,
    remote_only: bool,
) -> None:
    """Run an execution again (same script, inputs and settings) under a new id; or the failed
    items of a batch, inside the batch (outputs land where the originals' would have)."""
    from rgrid.cli.context import connect
    from rgrid.cli.running import attach

    client = connect()
    if batch_id is not None or (execution_id and views.is_batch(execution_id)):
        from rgrid.cli import batch
        from rgrid.client.batch import current_inputs

        target = batch_id or str(execution_id)
        states = {"failed"} if failed_only else {"failed", "cancelled"}
        inputs = current_inputs(client, client.batch_items(target).data, states)
        made = client.retry_batch(target, failed_only=failed_only, inputs=inputs)
        render.info(f"{target}: {len(made)} item(s) queued again")
        if detach:
            return
        sys.exit(
            batch.attach(
                client,
                target,
                output_dir=output_dir,
                flat=False,
                remote_only=remote_only,
                as_json=False,
            )
        )
    if execution_id is None:
        raise click.UsageError("give an execution ID, or --batch ID")
    execution = client.retry(execution_id, force=force)
    render.info(f"{execution.id} retries {execution.retry_of}")
    if detach:
        click.echo(execution.id)
        return
    sys.exit(attach(client, execution.id, output_dir=output_dir, remote_only=remote_only))


COMMANDS = [status, logs, outputs, download, list_, wait, cancel, retry]
