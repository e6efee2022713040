"""What the read-only commands do once their arguments are parsed. Nothing here imports click:
the click commands call these, and so does the quick path (``rgrid.cli.quick``)."""

from __future__ import annotations

import sys
from pathlib import Path

from rgrid.cli import render


def is_batch(identifier: str) -> bool:
    return identifier.startswith("batch_")


def status(
    execution_id: str, *, watch: bool = False, output_dir: Path | None = None, as_json: bool = False
) -> None:
    """`rgrid status ID`: an execution's fields, or a batch's progress (followed with ``watch``)."""
    from rgrid.cli.context import connect

    client = connect()
    if is_batch(execution_id):
        from rgrid.cli import batch

        if watch:
            sys.exit(
                batch.attach(
                    client,
                    execution_id,
                    output_dir=output_dir,
                    flat=False,
                    remote_only=False,
                    as_json=as_json,
                )
            )
        page = client.batch_items(execution_id)
        render.emit_json(page) if as_json else render.batch(page)
        return
    execution = client.get(execution_id)
    render.emit_json(execution) if as_json else render.execution(execution)
