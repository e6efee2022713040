"""Acceptance: `rgrid run [OPTIONS] SCRIPT [ARGS]...` parses as python does (issue 14, item 6).

Everything after SCRIPT is the script's, byte for byte; each case runs the real CLI and plain
python on the same arguments and compares exit code, stdout and stderr (rgrid's lines aside).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import RGRID_BIN, Cli

ECHO = "import json, sys\nprint(json.dumps(sys.argv[1:]))\n"

PARSER = """\
import argparse
parser = argparse.ArgumentParser(description="a script with its own options")
parser.add_argument("count", type=int)
parser.add_argument("--verbose", action="store_true")
print(parser.parse_args())
"""

#: arguments rgrid must never touch: its own option names, `--`, `=`, empties, spaces, unicode
ODD = [
    "--help",
    "--batch",
    "32",
    "--timeout",
    "5",
    "--env",
    "X=1",
    "--memory",
    "1GiB",
    "--output-dir",
    "elsewhere",
    "--parallel",
    "3",
    "--detach",
    "--no-cache",
    "-h",
    "-x",
    "--",
    "=",
    "--key=value",
    "",
    "two words",
    "  padded  ",
    "ünïcødé ✓ 数据",
    "{}",
    "missing/",
    "./missing",
    "../missing/file.txt",
]


def _both(cli: Cli, *command: str) -> tuple[subprocess.CompletedProcess[bytes], ...]:
    """``python SCRIPT ARGS`` and ``rgrid run [OPTIONS] SCRIPT ARGS`` in the same directory."""
    options = command[: command.index("--script") if "--script" in command else 0]
    script_and_args = command[len(options) + (1 if options else 0) :]
    plain = subprocess.run(
        [sys.executable, *script_and_args], cwd=cli.cwd, capture_output=True, timeout=60
    )
    rgrid = subprocess.run(
        [str(RGRID_BIN), "run", *options, *script_and_args],
        cwd=cli.cwd,
        env=cli.env,
        capture_output=True,
        timeout=120,
    )
    return plain, rgrid


def _own(stderr: bytes) -> bytes:
    return b"".join(
        line for line in stderr.splitlines(keepends=True) if not line.startswith(b"rgrid")
    )


def _hints(stderr: bytes) -> list[str]:
    return [line for line in stderr.decode().splitlines() if line.startswith("rgrid: hint:")]


def _same(plain: subprocess.CompletedProcess[bytes], rgrid: subprocess.CompletedProcess[bytes]):
    assert rgrid.returncode == plain.returncode, rgrid.stderr.decode()
    assert rgrid.stdout == plain.stdout
    assert _own(rgrid.stderr) == _own(plain.stderr)


def test_everything_after_the_script_is_the_scripts(cli: Cli, workdir: Path) -> None:
    (workdir / "echo.py").write_text(ECHO)

    plain, rgrid = _both(cli, "--no-cache", "--script", "echo.py", *ODD)

    _same(plain, rgrid)
    assert json.loads(rgrid.stdout) == ODD
    assert "rgrid run [OPTIONS]" not in rgrid.stdout.decode()  # --help was not rgrid's


def test_a_double_dash_right_after_the_script_is_passed_on(cli: Cli, workdir: Path) -> None:
    (workdir / "echo.py").write_text(ECHO)

    plain, rgrid = _both(cli, "echo.py", "--", "x", "--timeout", "5")

    _same(plain, rgrid)
    assert json.loads(rgrid.stdout) == ["--", "x", "--timeout", "5"]  # python: argv[1] == "--"


def test_arguments_naming_existing_paths_are_not_rewritten(cli: Cli, workdir: Path) -> None:
    (workdir / "data").mkdir()
    (workdir / "data" / "a.txt").write_text("a\n")
    (workdir / "echo.py").write_text(ECHO)

    plain, rgrid = _both(cli, "echo.py", "data/", "./data/a.txt", "..", "../project/data/")

    _same(plain, rgrid)


def test_help_after_the_script_is_the_scripts_help(cli: Cli, workdir: Path) -> None:
    (workdir / "tool.py").write_text(PARSER)

    plain, rgrid = _both(cli, "tool.py", "--help")

    _same(plain, rgrid)
    assert b"a script with its own options" in rgrid.stdout
    assert _hints(rgrid.stderr) == []


def test_rgrid_options_before_the_script_still_apply(cli: Cli, workdir: Path) -> None:
    (workdir / "env.py").write_text("import os, sys\nprint(os.environ['MODE'], sys.argv[1:])\n")

    result = cli("run", "--env", "MODE=fast", "--timeout", "30s", "env.py", "--timeout", "5")

    assert result.returncode == 0, result.stderr
    assert result.stdout == "fast ['--timeout', '5']\n"


def test_an_unknown_option_before_the_script_is_a_usage_error(cli: Cli, workdir: Path) -> None:
    (workdir / "echo.py").write_text(ECHO)

    result = cli("run", "--threshold", "0.5", "echo.py")

    assert result.returncode == 2
    assert "No such option '--threshold'" in result.stderr
    assert "exec_" not in result.stderr  # nothing was submitted


def test_a_script_rejecting_an_rgrid_option_gets_one_hint(cli: Cli, workdir: Path) -> None:
    (workdir / "tool.py").write_text(PARSER)

    plain, rgrid = _both(cli, "--no-cache", "--script", "./tool.py", "3", "--env", "X")

    _same(plain, rgrid)  # exit 2 and argparse's own complaint, as with python
    assert b"unrecognized arguments: --env X" in rgrid.stderr
    assert _hints(rgrid.stderr) == [  # the command as typed, with the option moved
        "rgrid: hint: rgrid's own options go before the script: "
        "rgrid run --no-cache --env X ./tool.py 3"
    ]


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["3", "--colour", "red"], "an option rgrid does not have either"),
        (["3", "--verbose"], "the script accepted every argument"),
        (["three", "--timeout", "5"], "the script failed on something else"),
    ],
)
def test_no_hint_otherwise(cli: Cli, workdir: Path, args: list[str], why: str) -> None:
    (workdir / "tool.py").write_text(PARSER.replace('"--verbose"', '"--verbose", "--timeout"'))

    plain, rgrid = _both(cli, "tool.py", *args)

    _same(plain, rgrid)
    assert _hints(rgrid.stderr) == [], why


def test_batch_options_go_first_and_the_item_takes_its_place(cli: Cli, workdir: Path) -> None:
    (workdir / "data").mkdir()
    for name in ("a", "b"):
        (workdir / "data" / f"{name}.csv").write_text(f"{name}\n")
    (workdir / "echo.py").write_text(
        "import json, sys\nopen('argv.json', 'w').write(json.dumps(sys.argv[1:]))\n"
    )

    result = cli(
        "run", "--batch", "data/*.csv", "--parallel", "2",
        "echo.py", "--in", "{}", "--parallel", "8", "--batch", "32",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    for name in ("a", "b"):
        argv = json.loads((workdir / "outputs" / name / "argv.json").read_text())
        assert argv == ["--in", f"data/{name}.csv", "--parallel", "8", "--batch", "32"]


def test_a_batch_whose_items_reject_an_rgrid_option_gets_one_hint(cli: Cli, workdir: Path) -> None:
    (workdir / "data").mkdir()
    (workdir / "data" / "a.csv").write_text("a\n")
    (workdir / "tool.py").write_text(PARSER.replace("type=int", "type=str"))

    result = cli("run", "--batch", "data/*.csv", "tool.py", "--timeout", "5")

    assert result.returncode == 1, result.stderr
    assert _hints(result.stderr.encode()) == [
        "rgrid: hint: rgrid's own options go before the script: "
        "rgrid run --batch 'data/*.csv' --timeout 5 tool.py"
    ]
