"""The ``rgrid`` command: parse → client call → render → exit code.

Every rgrid error ends as one ``error: …`` line (plus a hint) on stderr and exit code 1;
``RGRID_DEBUG=1`` shows the traceback. Heavy modules are imported inside commands so that
``rgrid --help`` stays fast; the commonest command lines (``rgrid --help``, ``rgrid status ID``,
``rgrid run SCRIPT ARGS...``) do not import click at all (``quick``), and the rest go through
the click group (``group``).
"""

from __future__ import annotations

import os
import sys

#: the widest help click writes, however wide the terminal
MAX_HELP_WIDTH = 100

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


#: what `rgrid --help` says of each command (the start of its help, as much as click shows), kept
#: here so that listing the commands imports none of their modules (a test renders the list both
#: ways and holds them equal)
SUMMARIES = {
    "accounts": "Accounts (admin key only).",
    "cancel": "Cancel a queued or running execution (its whole process group is killed), or "
    "every unfinished item of a batch.",
    "console": "Open the grid's web console in the browser, already signed in.",
    "cost": "What your executions cost: per group, executions, compute time and cost; a total.",
    "doctor": "What this machine offers: sandbox, Python, uv, the grid and its storage.",
    "download": "Download an execution's outputs, keeping their relative paths.",
    "estimate": "What running SCRIPT over N items would cost and take, from your earlier runs "
    "of it.",
    "init": "Ask for an API key, check it against the grid, save it to ~/.rgrid/credentials "
    "(0600).",
    "keys": "API keys.",
    "list": "Your executions, newest first.",
    "logs": "The execution's output lines in order (out| stdout, err| stderr, rgrid| and "
    "setup| rgrid's own); with --follow, then live until it ends.",
    "outputs": "The output files of an execution.",
    "retry": "Run an execution again (same script, inputs and settings) under a new id; or the "
    "failed items of a batch, inside the batch (outputs land where the originals' would "
    "have).",
    "run": "Run SCRIPT with ARGS on the grid: live output, outputs downloaded, the script's "
    "exit code.",
    "server": "The grid server (the local daemon starts by itself on first use).",
    "status": "State, times, worker, exit code and failure of an execution, or the progress of "
    "a batch.",
    "wait": "Stream an execution's output until it ends, download its outputs, exit with its "
    "code; for a batch: follow it, download what is missing, exit 0 / 1 all failed / 3 some "
    "failed.",
    "workers": "The worker pool: each worker (a Ray node, or the server's own slots) with its "
    "state, slots busy/total, price, the end of its billing period, its provider id and kind "
    "when the autoscaler made it, its sandbox and Python runtimes; then where the autoscaler "
    "stands.",
}


#: what `rgrid --help` says first (the click group's help, and the quick path's)
DESCRIPTION = """\
Run an unmodified Python script on the grid, exactly as if it ran here.

\b
  rgrid run process.py data.csv       # stdout, stderr, exit code and output files as with python
  rgrid status ID / logs ID / list     # look at executions (ids may be shortened)

The grid is RGRID_API_URL + RGRID_API_KEY, else a profile in ~/.rgrid/credentials
(RGRID_PROFILE, see `rgrid init`), else the local grid under RGRID_HOME (default
~/.rgrid/local), started on first use."""


def help_width() -> int:
    """The width click's help takes: the terminal's (as ``shutil.get_terminal_size`` finds it:
    COLUMNS, else the terminal of stdout, else 80), at most ``MAX_HELP_WIDTH``, less 2, at least
    50. Found here because click would import shutil for it, and shutil loads the bz2 and lzma
    modules: a few milliseconds of every `rgrid --help`."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
        columns = columns or 80
    return max(min(columns, MAX_HELP_WIDTH) - 2, 50)


def main() -> None:
    """Run the command line in ``sys.argv``: through the quick path when it takes it (no click
    imported), else through click."""
    from rgrid.cli import quick

    try:
        action = quick.action(sys.argv[1:])
        if action is not None:
            action()
        else:
            _through_click()
    except KeyboardInterrupt:
        from rgrid.cli.render import echo

        echo("\naborted", err=True)  # as click words it
        sys.exit(130)
    except Exception as exc:
        from rgrid import errors  # here: `rgrid --help` never needs it

        if not isinstance(exc, errors.RgridError) or os.environ.get("RGRID_DEBUG"):
            raise
        from rgrid.cli.render import clean, echo  # the grid's words may carry a tenant's names

        echo(f"error: {clean(exc.message)}", err=True)
        if exc.hint:
            echo(f"hint: {clean(exc.hint)}", err=True)
        sys.exit(1)


def _through_click() -> None:
    import click

    from rgrid.cli.group import cli

    try:
        cli.main(standalone_mode=False, terminal_width=help_width())
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


#: allocations between two passes of the cyclic garbage collector in the `rgrid` program
GC_THRESHOLD = 50_000


def entry() -> None:
    """The `rgrid` program: ``main``, then the process ends at once with its exit code.

    A finished command has no use for the interpreter's finalization (tearing down every
    module and object), which takes as long as a quarter of `rgrid status`. What it would do
    that a user could notice is done first: the atexit handlers run and the standard streams
    are flushed. With a thread of the command still running, a flush failing (a closed pipe)
    or an exit message instead of a code, the exit is the usual one, so nothing changes there.
    """
    import gc

    # A command's start allocates some 20,000 objects (modules, classes, functions) and none
    # of them is garbage; the collector's default, a pass every 700 allocations, spends 4-7 ms
    # of a 50 ms `rgrid status` finding that out. A pass every 50,000 instead: a short command
    # makes none, a long one (following a log for hours) still collects, every so often.
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
    try:
        main()
        code = 0
    except SystemExit as exc:
        if exc.code is not None and not isinstance(exc.code, int):
            raise
        code = exc.code or 0
    if _threads_running():
        sys.exit(code)
    import atexit

    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe or stream: the usual exit reports it
        sys.exit(code)
    os._exit(code)


def _threads_running() -> bool:
    """Whether a thread other than this one still runs that the usual exit would wait for."""
    if "threading" not in sys.modules:
        return False
    import threading

    current = threading.current_thread()
    return any(t is not current and not t.daemon for t in threading.enumerate())
