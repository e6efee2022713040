"""The click group behind every `rgrid` command line the quick path (``rgrid.cli.quick``) does
not take: commands load their module on first use."""

from __future__ import annotations

import importlib

import click

from rgrid import __version__
from rgrid.cli import COMMAND_MODULES, DESCRIPTION, MAX_HELP_WIDTH, SUMMARIES
from rgrid.cli.quick import short_help


class LazyGroup(click.Group):
    """Commands load their module on first use: `rgrid run` does not import the admin code, and
    the help lists them without importing any."""

    def list_commands(self, _ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def get_command(self, _ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMAND_MODULES.get(cmd_name)
        if module is None:
            return None
        commands: list[click.Command] = importlib.import_module(module).COMMANDS
        return next(c for c in commands if c.name == cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """As click lists them (its shortening rule: ``quick.short_help``), from ``SUMMARIES``."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        with formatter.section("Commands"):
            formatter.write_dl([(name, short_help(SUMMARIES[name], limit)) for name in names])


@click.group(
    cls=LazyGroup,
    help=DESCRIPTION,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": MAX_HELP_WIDTH},
)
@click.version_option(__version__, prog_name="rgrid")
def cli() -> None:
    pass
