"""The `rgrid` program ends at once after its command (``rgrid.cli.entry``), skipping the
interpreter's finalization, yet a user sees no difference from the usual exit: the same output
through a pipe, the same exit code and messages, atexit handlers run, threads waited for, a
closed pipe reported as before. Each case runs the usual exit (``python -m rgrid``, which calls
``main``) and ``entry`` side by side in fresh interpreters."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: run the CLI with ``sys.argv[1:]`` through ``entry`` (or ``main``), after ``SETUP``
PROGRAM = """
import sys
{setup}
from rgrid.cli import {function}
sys.argv = ["rgrid", *sys.argv[1:]]
{function}()
"""

AT_EXIT = "import atexit; atexit.register(print, 'atexit ran', flush=False)"
#: a thread the usual exit waits for, writing after the command ended
THREAD = """
import threading, time
def late():
    time.sleep(0.3)
    print("thread done", flush=False)
threading.Thread(target=late).start()
"""


def _run(
    function: str, args: list[str], setup: str = "", stdout: int = subprocess.PIPE
) -> subprocess.CompletedProcess[bytes]:
    program = PROGRAM.format(setup=setup, function=function)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RGRID_", "PYTHONUNBUFFERED"))}
    return subprocess.run(
        [sys.executable, "-c", program, *args], stdout=stdout, stderr=subprocess.PIPE, env=env
    )


def _same(args: list[str], setup: str = "") -> subprocess.CompletedProcess[bytes]:
    usual = _run("main", args, setup)
    quick = _run("entry", args, setup)
    assert (quick.returncode, quick.stdout, quick.stderr) == (
        usual.returncode,
        usual.stdout,
        usual.stderr,
    )
    return quick


def test_the_help_comes_whole_through_a_pipe() -> None:
    done = _same(["--help"])
    assert done.returncode == 0
    assert done.stdout.startswith(b"Usage: rgrid") and done.stdout.endswith(b"\n")
    assert b"status" in done.stdout


def test_a_usage_error_keeps_its_message_and_exit_code() -> None:
    done = _same(["run", "--timeout"])
    assert done.returncode == 2
    assert b"--timeout" in done.stderr and done.stdout == b""


def test_an_error_of_rgrid_keeps_its_message_and_exit_code(tmp_path: Path) -> None:
    done = _same(["run", "--timeout", "soon", str(tmp_path / "job.py")])
    assert done.returncode == 2
    assert b"soon" in done.stderr


def test_atexit_handlers_still_run() -> None:
    done = _same(["--help"], AT_EXIT)
    assert done.stdout.endswith(b"atexit ran\n")


def test_a_running_thread_is_still_waited_for() -> None:
    done = _same(["--help"], THREAD)
    assert done.returncode == 0
    assert done.stdout.endswith(b"thread done\n")


def test_a_closed_pipe_is_reported_as_usual() -> None:
    read, write = os.pipe()
    os.close(read)  # nobody will read: writing to stdout fails
    try:
        # a line waits in stdout's buffer, then the command fails with a usage error
        usual, quick = (
            _run(function, ["run", "--timeout"], 'print("early")', stdout=write)
            for function in ("main", "entry")
        )
    finally:
        os.close(write)
    assert quick.returncode == usual.returncode == 120  # the interpreter's: output not flushed
    assert quick.stderr == usual.stderr
    assert b"--timeout" in quick.stderr and b"BrokenPipeError" in quick.stderr


#: count the garbage collector's passes, reported at exit
COLLECTIONS = """
import atexit, gc, sys
passes = []
gc.callbacks.append(lambda phase, info: phase == "start" and passes.append(info["generation"]))
atexit.register(lambda: sys.stderr.write(f"passes: {len(passes)}\\n"))
import rgrid.cli  # what the program imports before calling the command
passes.clear()
"""


def test_a_short_command_makes_no_garbage_collection_pass() -> None:
    # click's path: thousands of objects allocated, none of them garbage
    args = ["run", "--timeout", "soon", "job.py"]
    usual = _run("main", args, COLLECTIONS)
    quick = _run("entry", args, COLLECTIONS)
    assert usual.returncode == quick.returncode == 2
    assert int(usual.stderr.rsplit(b"passes: ", 1)[1]) > 0  # the default: a pass every 700
    assert quick.stderr.endswith(b"passes: 0\n"), quick.stderr
    assert quick.stderr.removesuffix(b"passes: 0\n") == usual.stderr.rsplit(b"passes: ", 1)[0]


def test_the_installed_program_is_entry() -> None:
    script = Path(sys.executable).with_name("rgrid").read_text()
    assert "from rgrid.cli import entry" in script
