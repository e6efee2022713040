"""The script's surroundings match the user's, side by side with plain ``python``: its time
zone and locale, and a CPU count that fits the execution (SPEC §4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.acceptance.conftest import run_id, status_of
from tests.acceptance.sidebyside import compare
from tests.conftest import Cli, LiveServer

CLOCK = """\
import datetime, locale, os, time
locale.setlocale(locale.LC_ALL, "")
print(time.tzname, os.environ.get("TZ"), os.environ.get("LANG"), os.environ.get("LC_TIME"))
print(time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(1_700_000_000)))
print(datetime.datetime.fromtimestamp(1_700_000_000).isoformat(), time.timezone, time.daylight)
print(locale.nl_langinfo(locale.CODESET), locale.localeconv()["decimal_point"])
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    template = tmp_path / "template"
    template.mkdir()
    (template / "clock.py").write_text(CLOCK)
    (template / "cpus.py").write_text(
        "import multiprocessing, os\n"
        "print(os.cpu_count(), len(os.sched_getaffinity(0)))\n"
        "with multiprocessing.Pool() as pool:\n"
        "    print(pool._processes, sum(pool.map(abs, [-1, -2, -3])))\n"
    )
    return template


@pytest.mark.parametrize(
    ("zone", "lang"),
    [
        ("Europe/Berlin", "C.UTF-8"),
        ("America/New_York", "C.UTF-8"),
        ("Asia/Kolkata", "POSIX"),
        ("UTC", "POSIX"),
    ],
)
def test_time_zone_and_locale_as_under_python(
    live_server: LiveServer, project: Path, tmp_path: Path, zone: str, lang: str
) -> None:
    env = live_server.cli_env(TZ=zone, LANG=lang, LC_TIME=lang)
    env.pop("LC_ALL", None)
    python, rgrid = compare(project, tmp_path / "here", ["clock.py"], env)
    assert rgrid.code == python.code == 0, rgrid.stderr
    assert rgrid.stdout == python.stdout
    assert zone.encode() in rgrid.stdout and rgrid.stderr == python.stderr
    # and as a user sees it, in a terminal
    import sys

    here = tmp_path / "here"
    local = in_a_terminal([sys.executable, "clock.py"], here, env)
    remote = in_a_terminal(
        [str(Path(sys.executable).parent / "rgrid"), "run", "clock.py"], here, env
    )
    assert without_rgrid_lines(remote) == local


def test_the_zone_of_the_local_clock_is_sent_when_tz_is_unset(
    cli: Cli, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No TZ: the zone /etc/localtime names (what python uses), by name."""
    from rgrid.client import surroundings

    (cli.cwd / "clock.py").write_text(CLOCK)
    cli.env.pop("TZ", None)
    result = cli("run", "--no-cache", "clock.py")
    assert result.returncode == 0, result.stderr
    local = surroundings.local_zone()
    assert local is not None
    assert f"{local}" in result.stdout.splitlines()[0]


def test_an_unknown_zone_or_locale_is_a_warning_and_utc_or_c_utf8(cli: Cli) -> None:
    (cli.cwd / "clock.py").write_text(CLOCK)
    cli.env.update(TZ="Mars/Olympus", LANG="xx_XX.UTF-8")
    result = cli("run", "--no-cache", "clock.py")
    assert result.returncode == 0, result.stderr
    assert "rgrid: warning: unknown time zone 'Mars/Olympus' here; the script runs in UTC" in (
        result.stderr
    )
    assert "the locale 'xx_XX.UTF-8' (LANG) is not installed here" in result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("('UTC', 'UTC') UTC C.UTF-8")


def test_the_zone_is_part_of_the_cache_key(cli: Cli) -> None:
    (cli.cwd / "clock.py").write_text(CLOCK)
    cli.env.update(TZ="Europe/Berlin")
    berlin = cli("run", "clock.py")
    cli.env.update(TZ="America/New_York")
    new_york = cli("run", "clock.py")
    assert status_of(cli, run_id(new_york))["cached_from"] is None
    assert "the time zone changed" in status_of(cli, run_id(new_york))["cache"]
    assert berlin.stdout != new_york.stdout
    cli.env.update(TZ="Europe/Berlin")
    again = cli("run", "clock.py")
    assert status_of(cli, run_id(again))["cached_from"] == run_id(berlin)


@pytest.mark.parametrize("bad", ["x" * 201, "Europe/Berlin now", "Zürich"])
def test_a_time_zone_the_grid_cannot_take_is_left_out_by_the_cli(cli: Cli, bad: str) -> None:
    """The CLI never sends what the grid would refuse: the run goes ahead in UTC."""
    (cli.cwd / "clock.py").write_text(CLOCK)
    cli.env.update(TZ=bad)
    result = cli("run", "--no-cache", "clock.py")
    assert result.returncode == 0, result.stderr


def test_a_one_slot_execution_sees_one_cpu_and_pools_fit_it(cli: Cli, project: Path) -> None:
    (cli.cwd / "cpus.py").write_text((project / "cpus.py").read_text())
    result = cli("run", "--no-cache", "cpus.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1 1\n1 6\n"  # multiprocessing works, with one worker


@pytest.mark.parametrize(
    ("surroundings", "limit"),
    [
        ({"locale": {"PATH": "/evil"}}, "LOCALE_NAME"),
        ({"locale": {"LANG": "de DE"}}, "MAX_SURROUNDING_CHARS"),
        ({"time_zone": "Europe/" + "x" * 300}, "MAX_SURROUNDING_CHARS"),
        ({"locale": {f"LC_X{chr(65 + i)}": "C" for i in range(17)}}, "MAX_LOCALE_ENTRIES"),
    ],
    ids=["not-a-locale-variable", "blank-in-value", "zone-too-long", "too-many"],
)
def test_the_grid_refuses_surroundings_it_cannot_take(
    live_server: LiveServer, surroundings: dict[str, object], limit: str
) -> None:
    """A client other than the CLI may send anything: it is refused, naming the limit, before
    anything is stored."""
    import httpx

    body = {
        "script": "a.py",
        "files": [{"path": "a.py", "digest": "blake3:" + "0" * 64, "size": 1}],
        "surroundings": surroundings,
    }
    answer = httpx.post(
        f"{live_server.url}/api/v1/executions",
        json=body,
        headers={"authorization": f"Bearer {live_server.admin_key}"},
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["details"]["limit"] == limit


def test_home_is_a_writable_folder_of_the_execution_and_nothing_comes_back(cli: Cli) -> None:
    (cli.cwd / "home.py").write_text(
        "import pathlib\n"
        "cache = pathlib.Path.home() / '.cache' / 'tool'\n"
        "cache.mkdir(parents=True)\n"
        "(cache / 'state').write_text('kept for the run')\n"
        "print((cache / 'state').read_text())\n"
    )
    result = cli("run", "--no-cache", "home.py")
    assert (result.returncode, result.stdout) == (0, "kept for the run\n"), result.stderr
    assert sorted(p.name for p in cli.cwd.iterdir()) == ["home.py"]


# ------------------------------------------------------------------------- a terminal

COLOURS_AND_PROGRESS = """\
import sys, time
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

console = Console()
console.print("[bold red]alert[/] and [green]fine[/]", sys.stdout.isatty(), sys.stderr.isatty())
console.print(console.size, console.color_system)
with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), console=console) as bar:
    task = bar.add_task("Working", total=20)
    for _ in range(20):
        time.sleep(0.01)
        bar.advance(task)
sys.stdout.flush()
time.sleep(0.2)
print("\\x1b[33mwarning in yellow\\x1b[0m", file=sys.stderr)
"""
RICH = "rich==15.0.0"  # the version the tests' own environment has, for plain python
COLUMNS, LINES = 100, 30


def in_a_terminal(argv: list[str], cwd: Path, env: dict[str, str]) -> bytes:
    """Everything ``argv`` drew on a pseudo-terminal of COLUMNS x LINES (its stdin, stdout
    and stderr), as a user's terminal would have received it."""
    import fcntl
    import os
    import struct
    import subprocess
    import termios

    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        start_new_session=True,
    )
    os.close(follower)
    drawn = b""
    try:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: every writer is gone
                break
            if not chunk:
                break
            drawn += chunk
        assert process.wait(timeout=300) == 0, drawn.decode(errors="replace")
    finally:
        os.close(leader)
        process.kill()
    return drawn


def final_screen(drawn: bytes) -> list[list[tuple[str, str, bool]]]:
    """The screen a terminal shows at the end, as rows of cells (character, colour, bold;
    rendered by pyte, a terminal emulator), without rgrid's own lines and trailing blank rows."""
    import pyte

    screen = pyte.Screen(COLUMNS, LINES)
    pyte.ByteStream(screen).feed(drawn)
    rows = [
        [
            (cell.data, cell.fg, cell.bold)
            for cell in (screen.buffer[row][col] for col in range(COLUMNS))
        ]
        for row in range(LINES)
    ]
    rows = [row for row in rows if not "".join(c for c, _, _ in row).startswith("rgrid")]
    while rows and not "".join(c for c, _, _ in rows[-1]).strip():
        rows.pop()
    return rows


def without_rgrid_lines(drawn: bytes) -> bytes:
    import re

    return re.sub(rb"^rgrid( setup)?: [^\n]*\n", b"", drawn, flags=re.MULTILINE)


def test_a_colour_library_and_a_progress_bar_draw_the_same_screen(
    cli: Cli, live_server: LiveServer
) -> None:
    import sys

    (cli.cwd / "fancy.py").write_text(COLOURS_AND_PROGRESS)
    (cli.cwd / "requirements.txt").write_text(RICH + "\n")
    env = {k: v for k, v in cli.env.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env.update(TERM="xterm-256color", COLORTERM="truecolor")
    local = in_a_terminal([sys.executable, "fancy.py"], cli.cwd, env)
    remote = in_a_terminal(
        [str(Path(sys.executable).parent / "rgrid"), "run", "fancy.py"], cli.cwd, env
    )
    assert b"\x1b[" in local  # it did draw in colour
    screen = final_screen(without_rgrid_lines(remote))
    assert screen == final_screen(local)
    assert "alert and fine True True" in "".join(c for c, _, _ in screen[0])  # two terminals
    assert ("a", "red", True) in screen[0]  # bold red
    # the stored log keeps what the script wrote, escape sequences included
    import re

    execution_id = re.findall(rb"exec_[a-z0-9]+", remote)[-1].decode()
    stored = cli("logs", execution_id, "--raw", "--stdout-only")
    assert "\x1b[1;31malert\x1b[0m" in stored.stdout
    assert "\x1b[2KWorking" in stored.stdout and "100%" in stored.stdout  # the bar, as drawn


def test_piped_output_is_not_a_terminal_as_before(cli: Cli) -> None:
    (cli.cwd / "tty.py").write_text("import sys\nprint(sys.stdout.isatty(), sys.stderr.isatty())\n")
    result = cli("run", "--no-cache", "tty.py")
    assert result.stdout == "False False\n"


def test_a_retry_runs_in_the_same_time_zone(cli: Cli) -> None:
    """A retry copies the surroundings its cache key names: it never answers for another zone."""
    (cli.cwd / "clock.py").write_text(CLOCK)
    cli.env.update(TZ="Asia/Tokyo")
    first = cli("run", "--no-cache", "clock.py")
    cli.env.update(TZ="America/New_York")  # the retry's own shell has another zone
    again = cli("retry", "--force", run_id(first))
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout and "Asia/Tokyo" in again.stdout
