"""`rgrid --help` lists the commands from their summaries, without importing a command's module:
the list must read exactly as click would render it from the commands themselves."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

from rgrid import cli
from rgrid.cli.group import cli as group

#: which command modules `rgrid --help` imported, in a fresh interpreter
FRESH = """
import json, sys
from rgrid.cli import COMMAND_MODULES, main
sys.argv = ["rgrid", "--help"]
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(set(COMMAND_MODULES.values()) & set(sys.modules))), file=sys.stderr)
"""


def _commands_section(width: int, *, eager: bool) -> str:
    ctx = click.Context(group, info_name="rgrid", max_content_width=width)
    formatter = ctx.make_formatter()
    if eager:  # click's own listing: every command object, its help shortened by click
        click.Group.format_commands(group, ctx, formatter)
    else:
        group.format_commands(ctx, formatter)
    return formatter.getvalue()


def test_every_command_has_a_summary() -> None:
    assert sorted(cli.SUMMARIES) == sorted(cli.COMMAND_MODULES)


@pytest.mark.parametrize("width", [52, 60, 72, 80, 100, 140])
def test_the_list_reads_as_click_renders_it_from_the_commands(
    width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    assert _commands_section(width, eager=False) == _commands_section(width, eager=True)


def test_help_imports_no_command_module() -> None:
    done = subprocess.run([sys.executable, "-c", FRESH], capture_output=True, text=True, check=True)
    assert "Commands:" in done.stdout and "  run " in done.stdout
    assert json.loads(done.stderr.strip().splitlines()[-1]) == []


def _click_width() -> int:
    """The width click's own help formatter takes when none is given."""
    import shutil

    return max(min(shutil.get_terminal_size().columns, cli.MAX_HELP_WIDTH) - 2, 50)


@pytest.mark.parametrize("columns", [None, "", "0", "-5", "wide", "30", "79", "80", "101", "250"])
def test_help_width_is_the_one_click_would_take(
    columns: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert cli.help_width() == _click_width()


#: in a process whose stdout is a terminal of a given size
ON_A_TERMINAL = """
import shutil
from rgrid import cli
from rgrid.cli.group import cli as group
print(cli.help_width(), max(min(shutil.get_terminal_size().columns, 100) - 2, 50))
"""


@pytest.mark.parametrize("columns", [40, 90, 132])
def test_help_width_on_a_terminal(columns: int) -> None:
    import fcntl
    import os
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    subprocess.run([sys.executable, "-c", ON_A_TERMINAL], stdout=follower, env=env, check=True)
    os.close(follower)
    shown = os.read(leader, 1000).decode().split()
    os.close(leader)
    assert shown[0] == shown[1] == str(max(min(columns, 100) - 2, 50))
