"""``rgrid server run|start|stop|status``: the grid server, in the foreground or as the local daemon."""

from __future__ import annotations

import click

from rgrid.cli import render

#: ``rgrid.settings.MAX_API_PROCESSES``, which is not imported here: pydantic would slow
#: every rgrid command's start (a test keeps the two equal)
MAX_API_PROCESSES = 64


@click.group()
def server() -> None:
    """The grid server (the local daemon starts by itself on first use)."""


@server.command(name="run")
@click.option(
    "--host", default="127.0.0.1", show_default=True, envvar="RGRID_HOST", help="[RGRID_HOST]"
)
@click.option(
    "--port", type=int, default=8765, show_default=True, envvar="RGRID_PORT", help="[RGRID_PORT]"
)
@click.option("--log-level", default="warning", show_default=True)
@click.option(
    "--api-processes",
    type=click.IntRange(1, MAX_API_PROCESSES),
    default=1,
    show_default=True,
    envvar="RGRID_API_PROCESSES",
    help="Processes answering the API on the port; above 1 (PostgreSQL only) this process "
    "runs the scripts and answers none itself. [RGRID_API_PROCESSES]",
)
def run_server(host: str, port: int, log_level: str, api_processes: int) -> None:
    """Run the server in the foreground (configuration from RGRID_* variables: the database,
    the storage, and where scripts run: RGRID_EXECUTOR=local, or ray://HEAD:PORT for the
    nodes of a Ray cluster, which RGRID_AUTOSCALE_PROVIDER=local|hetzner grows and shrinks
    with the queue; docs/operating.md lists them all)."""
    try:
        import uvicorn  # noqa: F401
    except ImportError as exc:
        from rgrid import errors

        raise errors.MissingExtra("the grid server needs: pip install 'rgrid[server]'") from exc
    import os

    from rgrid.api.processes import log_to_stderr, serve
    from rgrid.settings import ServerSettings

    log_to_stderr(log_level)
    # the grid's settings see where it listens (the URL worker nodes reach it at by default)
    os.environ["RGRID_HOST"], os.environ["RGRID_PORT"] = host, str(port)
    os.environ["RGRID_API_PROCESSES"] = str(api_processes)
    settings = ServerSettings()
    if api_processes > 1 and not settings.resolved_database_url.startswith("postgres"):
        raise click.UsageError(
            "--api-processes above 1 needs PostgreSQL (RGRID_DATABASE_URL=postgresql://…): "
            "with SQLite one process writes at a time, and a submit to another process "
            "would wait for the dispatcher's next poll"
        )
    serve(settings, log_level=log_level)


@server.command()
@click.option("--port", type=int, help="Port on 127.0.0.1 (default: a free one).")
def start(port: int | None) -> None:
    """Start the local grid daemon (RGRID_HOME) if it is not running."""
    from rgrid.client import config, daemon

    info, started = daemon.start(config.local_home(), port)
    render.info(
        f"local grid {'started' if started else 'already running'} at {info.url} (pid {info.pid})"
    )


@server.command()
def stop() -> None:
    """Stop the local grid daemon; history is kept in RGRID_HOME."""
    from rgrid.client import config, daemon

    info = daemon.stop(config.local_home())
    render.info(
        f"stopped the local grid (pid {info.pid})" if info else "the local grid is not running"
    )


@server.command(name="status")
def server_status() -> None:
    """Whether the local grid daemon runs, and where."""
    import sys

    from rgrid.client import config, daemon

    home = config.local_home()
    info = daemon.status(home)
    if info is None:
        click.echo(f"not running (home {home})")
        sys.exit(3)
    click.echo(f"running at {info.url} (pid {info.pid}, home {home})")


COMMANDS = [server]
