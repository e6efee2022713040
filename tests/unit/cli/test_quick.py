"""The quick path (`rgrid --help`, `rgrid status ID` without click) must read and parse exactly
as click does, and hand every other command line to click."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from rgrid.cli import MAX_HELP_WIDTH, quick
from rgrid.cli.executions import status as status_command
from rgrid.cli.group import cli as group

#: run main() on the given arguments; report on stderr whether click was imported
FRESH = """
import json, sys
from rgrid.cli import main
sys.argv = ["rgrid", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print(json.dumps({"click": "click" in sys.modules, "code": code}), file=sys.stderr)
"""


def _click_help(width: int) -> str:
    ctx = click.Context(group, info_name="rgrid", terminal_width=width, **group.context_settings)
    return group.get_help(ctx)


@pytest.mark.parametrize("width", range(50, MAX_HELP_WIDTH + 1))
def test_the_help_reads_as_click_renders_it(width: int) -> None:
    assert quick.top_help(width) == _click_help(width)


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("Short.", 40),
        ("One sentence. Another one.", 40),
        ("Ends with e.g. an abbreviation. Then more.", 60),
        ("Exactly forty characters long, I believe", 40),
        ("Exactly forty characters long, I believe", 39),
        ("A b c d e f g h i j k l m n o p", 9),
        ("Words that are quite long indeed and more", 20),
        ("First paragraph here.\n\nSecond paragraph.", 80),
    ],
)
def test_a_summary_is_shortened_as_click_shortens_it(text: str, limit: int) -> None:
    assert quick.short_help(text, limit) == click.Command("x", help=text).get_short_help_str(limit)


#: command lines the quick path takes, and what it must find in them
TAKEN = [
    (["status", "exec_1a2b"], ("exec_1a2b", False)),
    (["status", "exec_1a2b", "--json"], ("exec_1a2b", True)),
    (["status", "--json", "batch_9f"], ("batch_9f", True)),
    (["status", "ex"], ("ex", False)),
    (["status", "a b\tc"], ("a b\tc", False)),
    (["status", "status"], ("status", False)),
    (["status", "json"], ("json", False)),
]

#: command lines left to click: options it alone knows, `--`, mistakes, other commands
DECLINED = [
    [],
    ["status"],
    ["status", ""],
    ["status", "--", "exec_1"],
    ["status", "exec_1", "--watch"],
    ["status", "--watch", "batch_1"],
    ["status", "exec_1", "--output-dir", "out"],
    ["status", "exec_1", "--json", "--json"],
    ["status", "--json", "--json"],
    ["status", "--jso", "exec_1"],
    ["status", "exec_1", "--JSON"],
    ["status", "exec_1", "exec_2"],
    ["status", "-h"],
    ["status", "exec_1", "--help"],
    ["status", "-x"],
    ["Status", "exec_1"],
    ["stat", "exec_1"],
    ["logs", "exec_1"],
    ["--help", "status"],
    ["--version"],
    ["-h", "-h"],
    ["--json", "status", "exec_1"],
]


@pytest.mark.parametrize(("argv", "expected"), TAKEN)
def test_a_status_line_is_parsed_as_click_parses_it(
    argv: list[str], expected: tuple[str, bool]
) -> None:
    assert quick.status_arguments(list(argv)) == expected
    ctx = status_command.make_context("status", list(argv[1:]))
    execution_id, as_json = expected
    assert ctx.params == {
        "execution_id": execution_id,
        "watch": False,
        "output_dir": None,
        "as_json": as_json,
    }


@pytest.mark.parametrize("argv", DECLINED)
def test_other_lines_go_to_click(argv: list[str]) -> None:
    assert quick.action(list(argv)) is None


def test_help_flags_are_taken() -> None:
    assert quick.action(["--help"]) is quick.show_help
    assert quick.action(["-h"]) is quick.show_help


def test_shell_completion_goes_to_click(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_RGRID_COMPLETE", "bash_complete")
    assert quick.action(["--help"]) is None
    assert quick.action(["status", "exec_1"]) is None


def _fresh(
    *argv: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-c", FRESH, *argv], capture_output=True, text=True, env=env
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return done, report


def test_help_imports_no_click() -> None:
    done, report = _fresh("--help")
    assert report == {"click": False, "code": 0}
    assert done.stdout.startswith("Usage: rgrid [OPTIONS] COMMAND [ARGS]...")


def test_a_status_error_reads_as_through_click() -> None:
    """Without click, and with the error click's path gives for the same command line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RGRID_")}
    env.update(RGRID_API_URL="http://127.0.0.1:99999", RGRID_API_KEY="k")
    quick_run, quick_report = _fresh("status", "exec_1", env=env)
    click_run, click_report = _fresh("status", "--", "exec_1", env=env)
    assert quick_report == {"click": False, "code": 1}
    assert click_report == {"click": True, "code": 1}
    assert quick_run.stdout == click_run.stdout == ""
    assert (
        quick_run.stderr.splitlines()[:-1]
        == click_run.stderr.splitlines()[:-1]
        == [
            "error: invalid grid URL 'http://127.0.0.1:99999'",
            "hint: e.g. http://host:8765",
        ]
    )


#: `rgrid run` lines the quick path takes: SCRIPT first, then anything at all for the script
RUN_TAKEN = [
    ["run", "job.py"],
    ["run", "job.py", "data.csv"],
    ["run", "job.py", "--help"],
    ["run", "job.py", "--timeout", "5m", "--batch", "32"],
    ["run", "job.py", "--", "-x", ""],
    ["run", "job.py", "-"],
    ["run", "job.py", "a b", "é", "$HOME", "*.csv"],
    ["run", "--no-cache", "job.py"],
    ["run", "--no-cache", "--detach", "--remote-only", "--yes", "job.py", "--yes"],
    ["run", "--no-network", "job.py", "--network"],
    ["run", "--no-network", "--network", "job.py"],
    ["run", "--network", "--no-network", "--no-cache", "--no-cache", "job.py"],
]

#: `rgrid run` lines left to click
RUN_DECLINED = [
    ["run"],
    ["run", "--timeout", "5m", "job.py"],
    ["run", "--no-cache"],
    ["run", "--no-cache", "--timeout", "5m", "job.py"],
    ["run", "--timeout", "5m", "--no-cache", "job.py"],
    ["run", "--no-cache=1", "job.py"],
    ["run", "--no-cach", "job.py"],
    ["run", "--no-cache", "--", "job.py"],
    ["run", "--no-cache", "missing.py"],
    ["run", "--batch", "*.csv", "job.py"],
    ["run", "--json", "job.py"],
    ["run", "--", "job.py"],
    ["run", "-h"],
    ["run", "--help"],
    ["run", ""],
    ["run", "missing.py"],
    ["run", "folder"],
    ["Run", "job.py"],
]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "job.py").write_text("print('hi')\n")
    (tmp_path / "folder").mkdir()
    for name in quick.RUN_ENVVARS:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("project")
@pytest.mark.parametrize("argv", RUN_TAKEN)
def test_a_run_line_is_parsed_as_click_parses_it(argv: list[str]) -> None:
    from rgrid.cli import running
    from rgrid.cli.options import key_values
    from rgrid.cli.run import run as run_command

    taken = quick.run_arguments(list(argv))
    assert taken is not None
    script, args, flags = taken
    assert script == "job.py"
    assert (script, *args) == tuple(argv[-len(args) - 1 :])
    params = dict(run_command.make_context("run", list(argv[1:])).params)
    params["env"] = key_values(params["env"], "--env", local_fallback=True)
    params["metadata"] = key_values(params["metadata"], "--metadata")
    assert params == {"script_arg": script, "args": args, **running.DEFAULTS, **flags}


@pytest.mark.usefixtures("project")
@pytest.mark.parametrize("argv", RUN_DECLINED)
def test_other_run_lines_go_to_click(argv: list[str]) -> None:
    assert quick.action(list(argv)) is None


@pytest.mark.usefixtures("project")
@pytest.mark.parametrize("name", quick.RUN_ENVVARS)
def test_a_run_option_set_in_the_environment_goes_to_click(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert quick.action(["run", "job.py"]) is not None
    monkeypatch.setenv(name, "1")
    assert quick.action(["run", "job.py"]) is None


def test_the_run_flags_are_click_flags_of_the_same_parameter_and_value() -> None:
    """Each flag the quick path takes is an option of `rgrid run` that takes no value and sets
    the same parameter to the same value through click."""
    from rgrid.cli.run import run as run_command

    for flag, (name, value) in quick.RUN_FLAGS.items():
        [option] = [p for p in run_command.params if flag in (*p.opts, *p.secondary_opts)]
        assert isinstance(option, click.Option) and option.is_flag and option.name == name
        assert (flag in option.secondary_opts) is not value


def test_the_run_variables_are_the_ones_click_reads_options_from() -> None:
    from rgrid.cli.run import run as run_command

    assert {p.envvar for p in run_command.params if p.envvar} == set(quick.RUN_ENVVARS)
