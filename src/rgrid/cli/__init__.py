"""The ``rgrid`` command: parse → client call → render → exit code.

Every rgrid error ends as one ``error: …`` line (plus a hint) on stderr and exit code 1;
``RGRID_DEBUG=1`` shows the traceback. Heavy modules are imported inside commands so that
``rgrid --help`` stays fast.
"""

from __future__ import annotations

import os
import sys

import click

from rgrid import __version__, errors
from rgrid.cli import admin, executions, run, server


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="rgrid")
def cli() -> None:
    """Run an unmodified Python script on the grid, exactly as if it ran here.

    \b
      rgrid run process.py data.csv       # stdout, stderr, exit code and output files as with python
      rgrid status ID / logs ID / list     # look at executions (ids may be shortened)

    The grid is RGRID_API_URL + RGRID_API_KEY, else a profile in ~/.rgrid/credentials
    (RGRID_PROFILE, see `rgrid init`), else the local grid under RGRID_HOME (default
    ~/.rgrid/local), started on first use.
    """


for module in (run, executions, server, admin):
    for command in module.COMMANDS:
        cli.add_command(command)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except errors.RgridError as exc:
        if os.environ.get("RGRID_DEBUG"):
            raise
        click.echo(f"error: {exc.message}", err=True)
        if exc.hint:
            click.echo(f"hint: {exc.hint}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
