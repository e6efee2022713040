"""Acceptance: the script sees the user's paths (issue 14 items 1, 4, 7; SPEC §4.2).

Each case runs plain ``python`` and ``rgrid run`` in identical fresh copies of a project at the
same path and compares exit code, stdout, stderr (rgrid's own lines aside) and the files,
tracebacks included.
"""

from __future__ import annotations

import json
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.acceptance.conftest import run_id, status_of
from tests.acceptance.sidebyside import compare
from tests.conftest import Cli, LiveServer, require_tool

ECHO = "import sys\nprint(repr(sys.argv))\n"


@pytest.fixture(autouse=True)
def _bubblewrap() -> None:
    require_tool("bwrap")


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """A place of its own for the copies (each run is at the same absolute path)."""
    place = Path("/tmp") / f"rgrid-dropin-{uuid.uuid4().hex[:8]}"
    yield place
    import shutil

    shutil.rmtree(place, ignore_errors=True)


def project(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def assert_same(python: object, rgrid: object) -> None:
    assert rgrid == python


def test_odd_arguments_reach_the_script_byte_for_byte(
    live_server: LiveServer, tmp_path: Path, scratch: Path
) -> None:
    template = project(
        tmp_path / "template",
        {"echo.py": ECHO, "images/a.jpg": "jpeg", "data/x.csv": "1,2\n"},
    )
    odd = [
        "images/",
        "./data/x.csv",
        "data/../data/x.csv",
        "--in=./data/x.csv",
        "a=b",
        "",
        "with space",
        "ünïcödé ✓",
        "-x",
        ".",
        "./",
    ]
    python, rgrid = compare(template, scratch / "proj", ["echo.py", *odd], live_server.cli_env())
    assert python.code == 0, python.stderr
    assert_same(python, rgrid)
    assert python.stdout.decode().strip() == repr(["echo.py", *odd])


def test_outside_paths_are_read_and_written_where_they_are(
    live_server: LiveServer, tmp_path: Path, scratch: Path
) -> None:
    """``../other/a.txt``, an absolute path, writes to ``../out/result.txt`` and ``/tmp/x``:
    the same bytes, the same places, the same traceback and working directory."""
    outside_file = Path("/tmp") / f"rgrid-saveconfig-{uuid.uuid4().hex[:8]}.yml"
    template = project(
        tmp_path / "template",
        {
            "work/tool.py": """\
                import os, sys
                print(os.getcwd())
                print(open(sys.argv[1]).read().strip())
                print(open(sys.argv[2]).read().strip())
                os.makedirs(os.path.dirname(sys.argv[3]), exist_ok=True)
                with open(sys.argv[3], "w") as out:
                    out.write("result\\n")
                with open(sys.argv[4], "w") as config:
                    config.write("saved: true\\n")
                raise SystemExit(f"done with {sys.argv[1]}")
            """,
            "other/a.txt": "from the side\n",
            "abs/b.txt": "by absolute path\n",
            "out/.keep": "",
        },
    )
    place = scratch / "proj"
    argv = ["tool.py", "../other/a.txt", str(place / "abs/b.txt"), "../out/result.txt"]
    python, rgrid = compare(
        template,
        place,
        [*argv, str(outside_file)],
        live_server.cli_env(),
        cwd="work",
        watched=[outside_file],
    )
    try:
        assert python.code == 1 and b"done with ../other/a.txt" in python.stderr
        assert python.files[str(outside_file)][0] == len("saved: true\n")
        assert "out/result.txt" in python.files
        assert_same(python, rgrid)
    finally:
        outside_file.unlink(missing_ok=True)


def test_a_traceback_shows_the_users_paths(
    live_server: LiveServer, tmp_path: Path, scratch: Path
) -> None:
    template = project(
        tmp_path / "template",
        {
            "app/main.py": "import helper\nhelper.fail()\n",
            "app/helper.py": "def fail():\n    raise ValueError('in the helper')\n",
        },
    )
    python, rgrid = compare(
        template, scratch / "proj", ["main.py"], live_server.cli_env(), cwd="app"
    )
    assert python.code == 1
    assert f'File "{scratch}/proj/app/helper.py", line 2'.encode() in python.stderr
    assert_same(python, rgrid)


def test_a_path_that_would_cover_the_system_is_refused_before_anything_is_sent(
    cli: Cli, workdir: Path
) -> None:
    (workdir / "read.py").write_text("import sys\nprint(open(sys.argv[1]).read())\n")
    before = cli("list", "--json")

    result = cli("run", "read.py", "/etc/hostname")

    assert result.returncode == 1
    assert "would cover the sandbox's /etc" in result.stderr
    assert "uploaded" not in result.stderr
    assert cli("list", "--json").stdout == before.stdout


def test_files_written_beside_a_named_outside_path_are_not_collected_and_named(
    cli: Cli, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    (work / "spill.py").write_text(
        "import os, sys\n"
        "target = sys.argv[1]\n"
        "open(target, 'w').write('named\\n')\n"
        "for n in range(5):\n"
        "    open(os.path.join(os.path.dirname(target), f'stray{n}.txt'), 'w').write('x')\n"
    )
    runner = Cli(cwd=work, env=cli.env)

    result = runner("run", "spill.py", str(outside / "named.txt"))

    assert result.returncode == 0, result.stderr
    assert (outside / "named.txt").read_text() == "named\n"
    assert sorted(p.name for p in outside.iterdir()) == ["named.txt"]
    assert "not collected" in result.stderr
    assert f"{outside}/stray0.txt" in result.stderr and "and 2 more" in result.stderr
    status = status_of(runner, run_id(result))
    assert status["cwd"] == str(work)
    assert status["named_outside"] == [str(outside / "named.txt")]
    outputs = json.loads(runner("outputs", run_id(result), "--json").stdout)
    assert [o["path"] for o in outputs] == [str(outside / "named.txt")]


def test_files_left_in_tmp_are_not_collected_and_named(cli: Cli, tmp_path: Path) -> None:
    """An unnamed /tmp file is lost with the sandbox, as the summary says (naming up to three);
    caches a library keeps under HOME (/tmp/.cache …) are not mentioned; a file the script
    removed itself is not either."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "scratch.py").write_text(
        "import os, tempfile\n"
        "open('/tmp/left.txt', 'w').write('x')\n"
        "os.makedirs('/tmp/run/parts', exist_ok=True)\n"
        "for n in range(3):\n"
        "    open(f'/tmp/run/parts/{n}.bin', 'wb').write(b'y')\n"
        "os.makedirs(os.path.expanduser('~/.cache/lib'), exist_ok=True)\n"
        "open(os.path.expanduser('~/.cache/lib/fonts.json'), 'w').write('{}')\n"
        "with tempfile.NamedTemporaryFile() as gone:\n"
        "    gone.write(b'removed at close')\n"
        "print('done')\n"
    )
    runner = Cli(cwd=work, env=cli.env)

    result = runner("run", "scratch.py")

    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    warning = [line for line in result.stderr.splitlines() if "not collected" in line]
    assert len(warning) == 1, result.stderr
    assert "/tmp/left.txt, /tmp/run/parts/0.bin, /tmp/run/parts/1.bin and 1 more" in warning[0]
    assert ".cache" not in result.stderr
    assert sorted(p.name for p in work.iterdir()) == ["scratch.py"]
