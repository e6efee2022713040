"""Connecting the CLI to its grid (starting the local one when needed)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rgrid.client import Client


def connect() -> Client:
    """A client for the configured grid; starts the local grid daemon if none is configured."""
    from rgrid.cli import render
    from rgrid.client import Client, daemon
    from rgrid.client import config as client_config

    target = client_config.resolve_target()
    if target.api_url is not None:
        client = Client(target.api_url, target.api_key)
    else:
        home = client_config.local_home()
        info, started = daemon.start(home)
        if started:
            render.echo(
                f"rgrid: started the local grid at {info.url} (`rgrid server stop` stops it)",
                err=True,
            )
        client = Client(info.url, target.api_key or info.admin_key)
    client.on_retry = lambda n, total: render.echo(
        f"rgrid: connection lost, retrying ({n}/{total})", err=True
    )
    if sys.stderr.isatty():
        client.on_progress = render.TransferBar(sys.stderr)
    return client
