"""The ``rgrid`` command: parse → client call → render → exit code.

Every rgrid error ends as one ``error: …`` line (plus a hint) on stderr and exit code 1;
``RGRID_DEBUG=1`` shows the traceback. Heavy modules are imported inside commands so that
``rgrid --help`` stays fast.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from rgrid import __version__, errors

#: each command and the module defining it, imported only when that command runs (or for help)
COMMAND_MODULES = {
    "run": "rgrid.cli.run",
    **dict.fromkeys(
        ("status", "logs", "outputs", "download", "list", "wait", "cancel", "retry"),
        "rgrid.cli.executions",
    ),
    "server": "rgrid.cli.server",
    "cost": "rgrid.cli.cost",
    "estimate": "rgrid.cli.cost",
    **dict.fromkeys(
        ("init", "doctor", "workers", "accounts", "keys", "console"), "rgrid.cli.admin"
    ),
}


class LazyGroup(click.Group):
    """Commands load their module on first use: `rgrid run` does not import the admin code."""

    def list_commands(self, _ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def get_command(self, _ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMAND_MODULES.get(cmd_name)
        if module is None:
            return None
        commands: list[click.Command] = importlib.import_module(module).COMMANDS
        return next(c for c in commands if c.name == cmd_name)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
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
        from rgrid.cli.render import clean  # the grid's words may carry a tenant's names

        click.echo(f"error: {clean(exc.message)}", err=True)
        if exc.hint:
            click.echo(f"hint: {clean(exc.hint)}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
