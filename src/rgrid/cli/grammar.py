"""``rgrid run``'s grammar after the fact: when a script failed complaining about an argument that
is one of rgrid's own option names, the user most likely meant it for rgrid, whose options go
before the script (``rgrid run --timeout 5 s.py``, as with python, uv run and docker run)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

import click

#: how argument parsers say they were given an option they do not know: argparse
#: ("unrecognized arguments: --env X"), click and optparse ("no such option: --memory"),
#: getopt ("option --parallel not recognized"), and the common "unknown option"
_COMPLAINT = re.compile(
    r"unrecognized arguments?:|no such option|unknown option|unrecognized option"
    r"|option \S+ not recognized",
    re.IGNORECASE,
)
_LONG_OPTION = re.compile(r"--[A-Za-z][\w-]*")


def long_options(command: click.Command) -> dict[str, bool]:
    """``--name`` → whether it takes a value, for every long option of ``command``."""
    names: dict[str, bool] = {}
    for param in command.params:
        if isinstance(param, click.Option):
            for name in (*param.opts, *param.secondary_opts):
                if name.startswith("--"):
                    names[name] = not param.is_flag and not param.count
    return names


def misplaced_hint(
    options: dict[str, bool], typed: Sequence[str], n_args: int, stderr_tail: Sequence[str]
) -> str | None:
    """The hint for a script that rejected rgrid options given after it, or None.

    ``options``: rgrid's long options (``long_options``); ``typed``: the command line after
    ``rgrid`` (``run``, rgrid's options, SCRIPT, then the script's ``n_args`` arguments);
    ``stderr_tail``: the last lines the script wrote on stderr. Only options the script
    complained about, and that the user gave after the script, are moved.
    """
    named = {
        name
        for line in stderr_tail
        if _COMPLAINT.search(line)
        for name in _LONG_OPTION.findall(line)
        if name in options
    }
    if not named or n_args <= 0 or len(typed) <= n_args:
        return None
    head, args = list(typed[:-n_args]), typed[-n_args:]
    moved: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        name, has_value, _ = args[i].partition("=")
        if name in named:
            takes = options[name] and not has_value and i + 1 < len(args)
            moved.extend(args[i : i + (2 if takes else 1)])
            i += 2 if takes else 1
            continue
        rest.append(args[i])
        i += 1
    if not moved:
        return None
    command = shlex.join(["rgrid", *head[:-1], *moved, head[-1], *rest])
    return f"rgrid's own options go before the script: {command}"
