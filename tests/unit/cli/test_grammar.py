"""The misplaced-option hint of `rgrid run` (issue 14, item 6): when it shows, and what it says."""

from __future__ import annotations

import pytest

from rgrid.cli.grammar import long_options, misplaced_hint
from rgrid.cli.run import run

OPTIONS = long_options(run)


def test_rgrid_options_are_known_with_whether_they_take_a_value() -> None:
    assert OPTIONS["--env"] is True
    assert OPTIONS["--timeout"] is True
    assert OPTIONS["--batch"] is True
    assert OPTIONS["--no-cache"] is False
    assert OPTIONS["--no-network"] is False
    assert "--threshold" not in OPTIONS


@pytest.mark.parametrize(
    ("typed", "tail", "expected"),
    [
        (  # argparse
            ["run", "s.py", "1", "--env", "X"],
            ["usage: s.py [-h] x", "s.py: error: unrecognized arguments: --env X"],
            "rgrid run --env X s.py 1",
        ),
        (  # the options already before the script stay, in their place
            ["run", "--no-cache", "./s.py", "--timeout", "5", "a b"],
            ["s.py: error: unrecognized arguments: --timeout 5"],
            "rgrid run --no-cache --timeout 5 ./s.py 'a b'",
        ),
        (  # click
            ["run", "s.py", "--memory=1GiB"],
            ["Try 's.py --help' for help.", "", "Error: No such option '--memory'."],
            "rgrid run --memory=1GiB s.py",
        ),
        (  # optparse, two of them
            ["run", "s.py", "--parallel", "4", "--detach"],
            ["s.py: error: no such option: --parallel", "also: unknown option --detach"],
            "rgrid run --parallel 4 --detach s.py",
        ),
    ],
)
def test_the_hint_repeats_the_command_with_the_options_moved(
    typed: list[str], tail: list[str], expected: str
) -> None:
    n_args = len(typed) - typed.index(next(t for t in typed if t.endswith(".py"))) - 1
    hint = misplaced_hint(OPTIONS, typed, n_args, tail)
    assert hint == f"rgrid's own options go before the script: {expected}"


@pytest.mark.parametrize(
    ("typed", "tail"),
    [
        # not one of rgrid's options
        (["run", "s.py", "--colour", "x"], ["error: unrecognized arguments: --colour x"]),
        # rgrid's option, but the complaint is about something else
        (["run", "s.py", "--env", "X"], ["ValueError: bad row 7"]),
        # named in the complaint but given before the script, so rgrid took it
        (["run", "--env", "X", "s.py", "--verbose"], ["unrecognized arguments: --env"]),
        # no arguments after the script at all
        (["run", "s.py"], ["unrecognized arguments: --env X"]),
    ],
)
def test_no_hint_otherwise(typed: list[str], tail: list[str]) -> None:
    n_args = len(typed) - typed.index("s.py") - 1
    assert misplaced_hint(OPTIONS, typed, n_args, tail) is None
