"""Acceptance: the project tree travels (issue 14, items 2 and 3). Each drop-in case runs the same
script with plain ``python`` and with ``rgrid run`` in identical fresh copies of a project, and
compares exit code, stdout and the resulting tree byte for byte."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.acceptance.conftest import run_id, status_of
from tests.conftest import Cli

MD2HTML = """\
import sys
name = sys.argv[1]
text = open(name + ".md").read()  # opened without being named: `md2html.py index`
open(name + ".html", "w").write("<p>" + text.strip() + "</p>\\n")
print("converted", name)
"""

SPLIT = """\
import configparser, sys
path = sys.argv[1].split("=", 1)[1]  # --config=params.ini
config = configparser.ConfigParser()
config.read(path)
rows = open(config["data"]["raw"]).read().splitlines()
with open(config["data"]["train"], "w") as out:  # into data/processed/, empty until now
    out.write("\\n".join(rows[: len(rows) // 2]) + "\\n")
with open("models/model.bin", "wb") as out:  # models/ exists, empty
    out.write(bytes(range(256)))
import os
os.makedirs("reports/empty/deeper")  # an empty directory the run creates comes back
print("rows", len(rows))
"""


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and directory (None) under ``root``."""
    found: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        found[rel] = None if path.is_dir() else path.read_bytes()
    return found


Outcome = tuple[int, str, dict[str, bytes | None]]


def side_by_side(
    cli: Cli, tmp_path: Path, make: dict[str, str], dirs: list[str], *argv: str
) -> tuple[Outcome, Outcome, str]:
    """Run ``argv`` with python in one fresh copy and with rgrid in another: (exit code,
    stdout, resulting tree) of each, and rgrid's stderr."""
    roots = []
    for label in ("python", "rgrid"):
        root = tmp_path / label
        for rel, text in make.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        for rel in dirs:
            (root / rel).mkdir(parents=True, exist_ok=True)
        roots.append(root)
    done = subprocess.run(
        [sys.executable, *argv], cwd=roots[0], capture_output=True, text=True, check=False
    )
    result = Cli(cwd=roots[1], env=cli.env)("run", *argv)
    return (
        (done.returncode, done.stdout, snapshot(roots[0])),
        (result.returncode, result.stdout, snapshot(roots[1])),
        result.stderr,
    )


def test_a_file_opened_without_being_named_is_there(account_cli: Cli, tmp_path: Path) -> None:
    plain, remote, stderr = side_by_side(
        account_cli,
        tmp_path,
        {"md2html.py": MD2HTML, "index.md": "hello\n"},
        [],
        "md2html.py",
        "index",
    )
    assert remote == plain, stderr
    assert plain[2]["index.html"] == b"<p>hello</p>\n"


def test_a_config_names_the_data_and_existing_empty_directories_are_there(
    account_cli: Cli, tmp_path: Path
) -> None:
    files = {
        "split.py": SPLIT,
        "params.ini": "[data]\nraw = data/raw.csv\ntrain = data/processed/train.csv\n",
        "data/raw.csv": "a\nb\nc\nd\n",
    }
    plain, remote, stderr = side_by_side(
        account_cli,
        tmp_path,
        files,
        ["data/processed", "models"],
        "split.py",
        "--config=params.ini",
    )
    assert plain[0] == 0 and plain[2]["data/processed/train.csv"] == b"a\nb\n"
    assert remote == plain, stderr  # the empty reports/empty/deeper came back too
    assert "reports/empty/deeper" in remote[2]


def test_rgridignore_is_honoured_and_gitignore_is_not(account_cli: Cli, workdir: Path) -> None:
    (workdir / "ls.py").write_text(
        "import os\nfor d, _, fs in sorted(os.walk('.')):\n"
        "    for f in sorted(fs): print(os.path.join(d, f))\n"
    )
    (workdir / ".gitignore").write_text("data.csv\n")
    (workdir / ".rgridignore").write_text("secret.txt\nbuild/\n*.log\n")
    for rel in ("data.csv", "secret.txt", "build/x.o", "run.log", "keep/a.txt"):
        (workdir / rel).parent.mkdir(parents=True, exist_ok=True)
        (workdir / rel).write_text(rel)
    (workdir / ".venv").mkdir()
    (workdir / ".venv" / "pyvenv.cfg").write_text("home = /usr\n")
    (workdir / ".git").mkdir()
    (workdir / ".git" / "HEAD").write_text("ref\n")
    (workdir / "__pycache__").mkdir()
    (workdir / "__pycache__" / "x.pyc").write_text("")

    result = account_cli("run", "ls.py")

    assert result.returncode == 0, result.stderr
    seen = set(result.stdout.split())
    assert {"./data.csv", "./keep/a.txt", "./.gitignore", "./.rgridignore", "./ls.py"} <= seen
    assert not {"./secret.txt", "./build/x.o", "./run.log"} & seen
    assert not [s for s in seen if s.startswith(("./.venv", "./.git/", "./__pycache__"))]


def test_over_the_budget_big_files_stay_behind_unless_named(
    account_cli: Cli, workdir: Path
) -> None:
    (workdir / "sizes.py").write_text(
        "import os, sys\nprint(sorted(f for f in os.listdir('.') if f.endswith('.bin')))\n"
    )
    for name in ("a.bin", "b.bin", "named.bin"):
        (workdir / name).write_bytes(os.urandom(1024**2 + 1))
    (workdir / "small.bin").write_bytes(b"x")
    env = {**account_cli.env, "RGRID_TREE_BUDGET": "2MiB"}

    result = Cli(cwd=workdir, env=env)("run", "sizes.py", "named.bin")

    assert result.returncode == 0, result.stderr
    assert result.stdout == "['named.bin', 'small.bin']\n"
    lines = [line for line in result.stderr.splitlines() if "stay behind" in line]
    assert len(lines) == 1 and lines[0].startswith("rgrid: 2 files over 1 MiB"), result.stderr
    assert "--include" in lines[0]


@pytest.mark.timeout(600)  # 2,000 first uploads on a busy 2-core machine
def test_a_changed_file_of_a_2000_file_tree_is_the_only_one_hashed_and_uploaded(
    account_cli: Cli, workdir: Path
) -> None:
    (workdir / "hello.py").write_text("print('hello')\n")
    for i in range(2000):
        folder = workdir / f"d{i // 100:02d}"
        folder.mkdir(exist_ok=True)
        (folder / f"f{i:04d}.txt").write_text(f"file {i}\n" * 10)
    old = time.time() - 60  # older than the hash cache's racy window
    for path in workdir.rglob("*"):
        os.utime(path, (old, old))
    env = {**account_cli.env, "RGRID_DEBUG": "1"}
    first = Cli(cwd=workdir, env=env)("run", "hello.py")
    assert first.returncode == 0, first.stderr
    assert "hashed 2001 file(s), 0 from the hash cache" in first.stderr
    assert "uploaded 2001 files" in first.stderr

    (workdir / "d07" / "f0700.txt").write_text("changed\n")
    again = Cli(cwd=workdir, env=env)("run", "hello.py")

    assert again.returncode == 0, again.stderr
    assert "hashed 1 file(s), 2000 from the hash cache" in again.stderr
    assert "rgrid: checking 2001 files (" in again.stderr  # not "sending": most are there
    assert "rgrid: uploaded 1 file (8 B), 2000 already on the grid" in again.stderr


def test_adding_a_batch_input_runs_only_the_new_item(account_cli: Cli, workdir: Path) -> None:
    (workdir / "count.py").write_text(
        "import sys\nprint(sys.argv[1], len(open(sys.argv[1]).read().split()))\n"
    )
    (workdir / "data").mkdir()
    (workdir / "data" / "a.csv").write_text("1 2\n")
    (workdir / "data" / "b.csv").write_text("1 2 3\n")
    first = account_cli("run", "--batch", "data/*.csv", "count.py")
    assert first.returncode == 0, first.stderr
    assert re.search(r"2 succeeded, 0 failed, 0 cached \(of 2\)", first.stderr), first.stderr

    (workdir / "data" / "c.csv").write_text("1\n")
    again = account_cli("run", "--batch", "data/*.csv", "count.py")

    assert again.returncode == 0, again.stderr
    assert re.search(r"3 succeeded, 0 failed, 2 cached \(of 3\)", again.stderr), again.stderr


def test_a_rerun_after_its_outputs_landed_in_the_tree_is_a_cache_hit(
    account_cli: Cli, workdir: Path
) -> None:
    (workdir / "make.py").write_text(
        "import os\nos.makedirs('out/logs', exist_ok=True)\n"
        "open('out/report.txt', 'w').write(str(os.urandom(8)))\n"
    )
    first = account_cli("run", "make.py")
    assert first.returncode == 0, first.stderr
    assert (workdir / "out" / "logs").is_dir()  # the empty directory came back

    again = account_cli("run", "make.py")

    assert again.returncode == 0, again.stderr
    assert status_of(account_cli, run_id(again))["cached_from"] == run_id(first)


IN_PLACE = """\
import os
with open("notes.txt", "a") as notes:  # a file of the tree, appended to
    notes.write("appended\\n")
with open("data/table.bin", "r+b") as table:  # patched in place
    table.seek(2)
    table.write(b"XY")
os.chmod("run.sh", 0o755)  # only its mode changes
print(open("notes.txt").read().strip().replace("\\n", "|"))
print(open("data/table.bin", "rb").read())
"""


def test_tree_files_changed_in_place_come_back_as_with_python(
    account_cli: Cli, tmp_path: Path
) -> None:
    """The tree is a shared read-only layer under an overlay: a file the script appends to,
    patches in place or changes the mode of is its own copy, and comes back like python's."""
    files = {
        "patch.py": IN_PLACE,
        "notes.txt": "first\n",
        "data/table.bin": "abcdef",
        "run.sh": "echo hi\n",
    }
    plain, remote, stderr = side_by_side(account_cli, tmp_path, files, [], "patch.py")
    assert plain[0] == 0 and plain[1] == "first|appended\nb'abXYef'\n"
    assert remote == plain, stderr


def test_batch_items_share_the_tree_and_never_see_each_others_writes(
    account_cli: Cli, workdir: Path
) -> None:
    """Every item of a batch mounts the same layer of the tree; what one item writes into a
    tree file is its own: each sees the file as the user's tree has it."""
    (workdir / "item.py").write_text(
        "import sys\n"
        "before = open('shared.txt').read()\n"
        "open('shared.txt', 'a').write(sys.argv[1] + '\\n')\n"
        "print(repr(before))\n"
    )
    (workdir / "shared.txt").write_text("origin\n")
    (workdir / "data").mkdir()
    names = [f"{i}.csv" for i in range(6)]
    for name in names:
        (workdir / "data" / name).write_text(name)
    done = account_cli("run", "--batch", "data/*.csv", "--parallel", "3", "item.py", "{}")
    assert done.returncode == 0, done.stderr
    for name in names:
        stem = name.removesuffix(".csv")
        assert (workdir / "outputs" / stem / "shared.txt").read_text() == (f"origin\ndata/{name}\n")
    assert (workdir / "shared.txt").read_text() == "origin\n"
