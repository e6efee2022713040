"""The quick path: the commonest command lines, run without importing click.

Importing click costs about as much as starting the interpreter twice over (it pulls in
``inspect``, ``ast``, ``enum`` and more): most of what `rgrid --help` and `rgrid status ID` would
otherwise take, and a good part of a plain `rgrid run script.py ARGS`. So a command line that is
*exactly* one of the shapes below runs here; any other (an option taking a value, ``--``, a
misspelling, shell completion) goes to click unchanged, which keeps click's parsing, help,
completion and error messages for everything else. Tests hold both ways equal: the help text
to click's rendering at every width, each shape's arguments to what click parses from the same
command line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from rgrid.cli import COMMAND_MODULES, DESCRIPTION, SUMMARIES, help_width

HELP_FLAGS = ("-h", "--help")
#: the environment variables `rgrid run` takes option values from
RUN_ENVVARS = ("RGRID_TIMEOUT", "RGRID_MEMORY", "RGRID_DISK", "RGRID_RUNTIME", "RGRID_MAX_RETRIES")
#: `rgrid run`'s options that take no value, as the quick path takes them before SCRIPT:
#: (the parameter each sets, its value); a test holds them to click's
RUN_FLAGS: dict[str, tuple[str, bool]] = {
    "--no-cache": ("no_cache", True),
    "--detach": ("detach", True),
    "--remote-only": ("remote_only", True),
    "--yes": ("yes", True),
    "--network": ("network", True),
    "--no-network": ("network", False),
}
#: click's placeholder for shortened help
ELLIPSIS = "..."
#: the group's options as its help lists them
OPTIONS = (
    ("--version", "Show the version and exit."),
    ("-h, --help", "Show this message and exit."),
)


def action(argv: list[str]) -> Callable[[], None] | None:
    """What to do for ``argv`` (the arguments after ``rgrid``), or None: let click parse it."""
    if any(name.endswith("_COMPLETE") for name in os.environ):
        return None  # click's shell completion: its own protocol
    if len(argv) == 1 and argv[0] in HELP_FLAGS:
        return show_help
    run = run_arguments(argv)
    if run is not None:
        script, args, flags = run

        def run_script() -> None:
            from rgrid.cli import running

            running.run_script(script, args, **{**running.DEFAULTS, **flags})

        return run_script
    status = status_arguments(argv)
    if status is not None:
        execution_id, as_json = status

        def run_status() -> None:
            from rgrid.cli import views

            views.status(execution_id, as_json=as_json)

        return run_status
    return None


def run_arguments(
    argv: list[str],
) -> tuple[str, tuple[str, ...], dict[str, bool]] | None:
    """``run [FLAGS] SCRIPT ARGS...`` where FLAGS are only options of ``RUN_FLAGS`` (none
    taking a value), SCRIPT is a readable file, and none of the environment variables click
    reads options from is set: (SCRIPT, ARGS, the parameters the flags set). As with python,
    everything after SCRIPT is the script's, whatever it looks like."""
    if not argv or argv[0] != "run" or any(name in os.environ for name in RUN_ENVVARS):
        return None
    flags: dict[str, bool] = {}
    index = 1
    while index < len(argv) and argv[index] in RUN_FLAGS:
        name, value = RUN_FLAGS[argv[index]]
        flags[name] = value  # as with click, the last of --network and --no-network wins
        index += 1
    if index == len(argv):
        return None
    script = argv[index]
    if not script or script.startswith("-"):
        return None
    # click's check of SCRIPT, whose failures are click's to word: a file, and readable
    if not (os.path.isfile(script) and os.access(script, os.R_OK)):
        return None
    return script, tuple(argv[index + 1 :]), flags


def status_arguments(argv: list[str]) -> tuple[str, bool] | None:
    """``status ID`` with or without ``--json`` (either side of the ID): (ID, as_json)."""
    if not argv or argv[0] != "status" or len(argv) not in (2, 3):
        return None
    rest = argv[1:]
    as_json = "--json" in rest
    if as_json:
        rest.remove("--json")
    if len(rest) != 1 or not rest[0] or rest[0].startswith("-"):
        return None
    return rest[0], as_json


def show_help() -> None:
    sys.stdout.write(top_help(help_width()) + "\n")
    sys.stdout.flush()


def top_help(width: int) -> str:
    """`rgrid --help` as click renders it at ``width`` (its formatter's width)."""
    lines = ["Usage: rgrid [OPTIONS] COMMAND [ARGS]...", ""]
    lines += _paragraphs(DESCRIPTION, width, indent="  ")
    lines += ["", "Options:"]
    lines += _definitions(OPTIONS)
    names = sorted(COMMAND_MODULES)
    limit = width - 6 - max(len(name) for name in names)
    commands = [(name, short_help(SUMMARIES[name], limit)) for name in names]
    lines += ["", "Commands:"]
    lines += _definitions(commands)
    return "\n".join(lines)


def short_help(text: str, limit: int) -> str:
    """A command's help shortened as click's command list shortens it: the first sentence of
    the first paragraph, cut at a word with ``...`` when longer than ``limit``."""
    words = text.partition("\n\n")[0].split()
    for i, word in enumerate(words):
        if word.endswith(".") and (i == len(words) - 1 or not words[i + 1][0].islower()):
            words = words[: i + 1]
            break
    joined = " ".join(words)
    if len(joined) <= limit:
        return joined
    kept: list[str] = []
    length = 0
    for word in words:
        grown = length + len(word) + (1 if kept else 0)
        if grown + len(ELLIPSIS) > limit:
            break
        kept.append(word)
        length = grown
    return " ".join(kept) + ELLIPSIS


def _paragraphs(text: str, width: int, *, indent: str) -> list[str]:
    """Paragraphs filled to ``width`` (indent included), blank lines between; a paragraph whose
    first line is ``\\b`` keeps its lines as they are (click's mark for "do not rewrap")."""
    out: list[str] = []
    for paragraph in text.split("\n\n"):
        if out:
            out.append("")
        lines = paragraph.splitlines()
        if lines[0].strip() == "\b":
            out += [indent + line for line in lines[1:]]
        else:
            out += _fill(paragraph.split(), width, indent)
    return out


def _fill(words: list[str], width: int, indent: str) -> list[str]:
    """Words placed greedily on lines of at most ``width`` characters, each after ``indent``."""
    lines: list[str] = []
    line = ""
    for word in words:
        if line and len(indent) + len(line) + 1 + len(word) > width:
            lines.append(indent + line)
            line = ""
        line = f"{line} {word}" if line else word
    if line:
        lines.append(indent + line)
    return lines


def _definitions(rows: Sequence[tuple[str, str]]) -> list[str]:
    """Two columns as click's definition lists set them: terms padded to the longest, two
    spaces, the text (short enough here never to wrap, which a test checks)."""
    column = max(len(term) for term, _ in rows) + 2
    return [f"  {term:<{column}}{text}".rstrip() for term, text in rows]
