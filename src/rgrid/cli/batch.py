"""Running and watching batches from the command line (``rgrid run … --batch GLOB``)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from rgrid.cli import render
from rgrid.enums import FailureClass

if TYPE_CHECKING:
    from rgrid import schemas
    from rgrid.client import Client
    from rgrid.client.batch import Progress

EXIT_ALL_FAILED = 1
EXIT_SOME_FAILED = 3
MAX_BATCH_ITEMS = 10_000
#: from this many items on, the estimate is shown before the batch starts
LARGE_BATCH = 100


def submit(
    client: Client,
    script: Path,
    args: list[str],
    patterns: list[str],
    includes: list[Path],
    options: dict[str, object],
    project: dict[str, object] | None = None,
) -> str:
    """Expand, upload what the grid lacks, submit the whole batch in one request."""
    from rgrid import schemas
    from rgrid.client import idempotency_key
    from rgrid.client.batch import expand, plan
    from rgrid.client.runs import submit_with_tree, upload_bundle

    inputs = expand(patterns, MAX_BATCH_ITEMS)
    batch = plan(script, args, inputs, includes, project)
    bundle = batch.bundle
    for line in render.tree_notices(bundle.tree_report):
        render.info(line)
    if len(inputs) >= LARGE_BATCH:  # say what it will cost and take before it starts
        from rgrid.cli.cost import estimate_lines

        parallel = options.get("parallel")
        for line in estimate_lines(
            client,
            bundle.script,
            script,
            len(inputs),
            parallel if isinstance(parallel, int) else None,
        ):
            render.info(line)
    named = upload_bundle(client, bundle, batch.inputs)
    spec = schemas.BatchCreate(
        script=bundle.script,
        files=[
            schemas.FileIn(path=f.rel, digest=f.digest, size=f.size) for f in bundle.named_files
        ],
        tree=bundle.tree_digest,
        items=batch.items,
        idempotency_key=idempotency_key(),
        cwd=bundle.cwd,
        argv0=bundle.argv0,
        mount_roots=bundle.mount_roots,
        named_outside=bundle.named_outside,
        **options,  # type: ignore[arg-type]
    )
    created, uploaded = submit_with_tree(client, bundle, lambda: client.submit_batch(spec), named)
    render.tree_debug(bundle.tree_digest, uploaded.tree_sent)
    if created.warning:
        render.info(f"warning: {created.warning}")
    report = render.upload_report(
        uploaded.uploaded_files, uploaded.uploaded_bytes, uploaded.already_there
    )
    render.info(
        f"{created.id}: {created.total} items, at most {created.parallel} at once ({report})"
    )
    return created.id


def attach(
    client: Client,
    batch_id: str,
    *,
    output_dir: Path | None,
    flat: bool,
    remote_only: bool,
    as_json: bool,
    explain: Callable[[list[str]], str | None] | None = None,
) -> int:
    """Follow until every item ended, downloading outputs as items finish; the exit code.
    ``explain``: given the causes of the failed items, a hint to show, if any."""
    from rgrid.client.batch import (
        INLINE_BYTES,
        fetch_outputs,
        flatten,
        folders,
        follow,
        staging_folder,
    )

    root = output_dir or (Path.cwd() if flat else Path.cwd() / "outputs")
    inline = 0 if remote_only else INLINE_BYTES  # small outputs come with the pages
    first = client.batch_items(batch_id, inline_bytes=inline)
    batch = first.batch
    places = folders([i.input for i in first.data])
    show = _renderer(batch, as_json)
    tty = sys.stderr.isatty() and not as_json

    def finished(item: schemas.BatchItemPublic) -> None:
        if remote_only or item.state.value != "succeeded":
            return
        folder = places.get(item.input) or folders([item.input])[item.input]
        place = staging_folder(folder) if flat else folder
        fetch_outputs(client, item, root, place, lambda a, why: render.not_downloaded(a.path, why))

    try:
        final, items = follow(
            client,
            batch.id,
            show,
            finished,
            on_poll=_redraw(batch) if tty else None,
            first=first,
            inline_bytes=inline,
        )
    except KeyboardInterrupt:
        render.info(f"detached; {batch.id} keeps running. Re-attach: `rgrid wait {batch.id}`")
        return 130
    if flat:
        list(flatten(root))
    code = _summary(final, items, as_json)
    causes = [i.cause for i in items if i.cause and i.failure_class is FailureClass.SCRIPT_ERROR]
    hint = explain(causes) if explain and causes and not as_json else None
    if hint:
        render.info(f"hint: {hint}")
    return code


def _renderer(
    batch: schemas.BatchPublic, as_json: bool
) -> Callable[[schemas.BatchItemPublic, Progress], None]:
    tty = sys.stderr.isatty() and not as_json

    def show(item: schemas.BatchItemPublic, _progress: Progress) -> None:
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "event": "item",
                        "batch": batch.id,
                        "id": item.id,
                        "input": item.input,
                        "state": item.state.value,
                        "exit_code": item.exit_code,
                        "failure_class": item.failure_class.value if item.failure_class else None,
                    }
                )
            )
        elif not tty:
            render.line(
                f"{item.state.value:<10} {item.input}  {item.id}"
                + (f"  ({item.failure_class.value})" if item.failure_class else "")
            )
        elif item.state.terminal and item.state.value != "succeeded":
            # above the bar, as it happens: the bar is redrawn below it after the poll
            kind = item.failure_class.value if item.failure_class else item.state.value
            shown = render.clean(f"{item.state.value} {item.input}: {kind}  ({item.id})")
            sys.stderr.write(f"\r\033[K{shown}\n")

    return show


def _redraw(batch: schemas.BatchPublic) -> Callable[[Progress], None]:
    """The live bar on a terminal, redrawn after every poll so elapsed and ETA move."""

    def redraw(progress: Progress) -> None:
        sys.stderr.write("\r" + _bar(progress, batch.parallel) + "\033[K")
        sys.stderr.flush()

    return redraw


def _bar(progress: Progress, parallel: int) -> str:
    counts = progress.counts
    done, total = progress.done, max(progress.total, 1)
    width = 24
    filled = int(width * done / total)
    eta = progress.eta_s(parallel)
    elapsed = time.monotonic() - progress.started
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {done}/{progress.total} done, "
        f"{counts.get('failed', 0)} failed, {counts.get('running', 0)} running, "
        f"{counts.get('queued', 0) + counts.get('retrying', 0)} queued, "
        f"{render.duration(elapsed)} elapsed"
        + (f", ETA {render.duration(eta)}" if eta is not None else "")
        + f", {render.money(progress.cost_micros)} so far"
    )


def _summary(
    batch: schemas.BatchPublic, items: list[schemas.BatchItemPublic], as_json: bool
) -> int:
    succeeded = [i for i in items if i.state.value == "succeeded"]
    failed = [i for i in items if i.state.value != "succeeded"]
    cached = sum(1 for i in succeeded if i.cached_from)
    code = 0 if not failed else EXIT_ALL_FAILED if not succeeded else EXIT_SOME_FAILED
    if as_json:
        click.echo(
            json.dumps(
                {
                    "event": "summary",
                    "batch": batch.id,
                    "total": batch.total,
                    "succeeded": len(succeeded),
                    "failed": len(failed),
                    "cached": cached,
                    "cost_micros": batch.cost_micros,
                    "failures": [
                        {
                            "input": i.input,
                            "id": i.id,
                            "state": i.state.value,
                            "failure_class": i.failure_class.value if i.failure_class else None,
                            "cause": i.cause,
                        }
                        for i in failed
                    ],
                    "exit_code": code,
                }
            )
        )
        return code
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    ran = any(i.started_at and i.finished_at and not i.cached_from for i in items)
    render.info(
        f"{batch.id}: {len(succeeded)} succeeded, {len(failed)} failed, {cached} cached "
        f"(of {batch.total}), cost {render.amount(batch.cost_micros, ran=ran)}"
    )
    for item in failed:
        kind = item.failure_class.value if item.failure_class else item.state.value
        render.info(f"  failed {item.input}: {kind}: {item.cause or '-'}  ({item.id})")
    return code
