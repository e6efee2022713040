"""Acceptance: what `rgrid run` sends and brings back, and its options (issue 2, item 1)."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

from tests.acceptance.conftest import run_id
from tests.conftest import Cli

from rgrid import digests

LIST_TREE = """\
import os, sys
print("argv", sys.argv[1:])
for root, dirs, files in os.walk(sys.argv[1]):
    dirs.sort()
    for name in sorted(files):
        path = os.path.join(root, name)
        print(path, open(path).read().strip())
"""

WRITE_OUTPUTS = """\
import os
os.makedirs("out/deep/er", exist_ok=True)
with open("out/deep/er/table.bin", "wb") as f:
    f.write(bytes(range(256)) * 40)
with open("out/summary.txt", "w") as f:
    f.write("summary\\n")
with open("top.json", "w") as f:
    f.write('{"ok": true}\\n')
print("wrote 3 files")
"""

OUTPUT_FILES = {
    "out/deep/er/table.bin": bytes(range(256)) * 40,
    "out/summary.txt": b"summary\n",
    "top.json": b'{"ok": true}\n',
}


def _files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_directory_argument_arrives_as_a_tree(cli: Cli, workdir: Path) -> None:
    (workdir / "data" / "sub" / "deeper").mkdir(parents=True)
    (workdir / "data" / "a.txt").write_text("alpha\n")
    (workdir / "data" / "sub" / "b.txt").write_text("beta\n")
    (workdir / "data" / "sub" / "deeper" / "c.txt").write_text("gamma\n")
    (workdir / "list_tree.py").write_text(LIST_TREE)

    result = cli("run", "list_tree.py", "data/")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] in ("argv ['data/']", "argv ['data']")
    assert lines[1:] == [
        "data/a.txt alpha",
        "data/sub/b.txt beta",
        "data/sub/deeper/c.txt gamma",
    ]
    # unchanged inputs are not "outputs": nothing new appears in the project
    assert sorted(p.relative_to(workdir).as_posix() for p in workdir.rglob("*") if p.is_file()) == [
        "data/a.txt",
        "data/sub/b.txt",
        "data/sub/deeper/c.txt",
        "list_tree.py",
    ]


def test_absolute_and_parent_paths_are_read_where_they_are_and_args_kept(
    cli: Cli, workdir: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "abs.csv").write_text("from an absolute path\n")
    (tmp_path / "up.csv").write_text("from the parent directory\n")
    (workdir / "show.py").write_text(
        "import sys\n"
        "print(sys.argv[1:])\n"
        "for name in sys.argv[1:3]:\n"
        "    print(open(name).read().strip())\n"
    )

    result = cli("run", "show.py", str(elsewhere / "abs.csv"), "../up.csv", "plain-word")

    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"[{str(elsewhere / 'abs.csv')!r}, '../up.csv', 'plain-word']\n"
        "from an absolute path\n"
        "from the parent directory\n"
    )
    # nothing is written back next to the originals or into the project
    assert not (workdir / "_inputs").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "project", "up.csv"]


def test_outputs_in_subfolders_come_back_with_their_paths(cli: Cli, workdir: Path) -> None:
    (workdir / "write.py").write_text(WRITE_OUTPUTS)

    result = cli("run", "write.py")

    assert result.returncode == 0, result.stderr
    assert result.stdout == "wrote 3 files\n"
    assert _files_under(workdir) == {"write.py": WRITE_OUTPUTS.encode(), **OUTPUT_FILES}
    assert re.search(r"3 output\(s\) downloaded", result.stderr)
    assert not list(workdir.rglob("*.part")), "a temporary download file was left behind"
    # permissions as if the script had written them here: 0666 less this shell's umask
    umask = os.umask(0o022)
    os.umask(umask)
    for path in OUTPUT_FILES:
        assert stat.S_IMODE((workdir / path).stat().st_mode) == 0o666 & ~umask, path


def test_output_dir_receives_the_outputs(cli: Cli, workdir: Path) -> None:
    (workdir / "write.py").write_text(WRITE_OUTPUTS)

    result = cli("run", "--output-dir", "results/run1", "write.py")

    assert result.returncode == 0, result.stderr
    assert _files_under(workdir / "results" / "run1") == OUTPUT_FILES
    assert not (workdir / "out").exists() and not (workdir / "top.json").exists()


def test_remote_only_keeps_outputs_on_the_grid_until_downloaded(cli: Cli, workdir: Path) -> None:
    (workdir / "write.py").write_text(WRITE_OUTPUTS)

    result = cli("run", "--remote-only", "write.py")

    assert result.returncode == 0, result.stderr
    assert result.stdout == "wrote 3 files\n"
    assert _files_under(workdir) == {"write.py": WRITE_OUTPUTS.encode()}
    execution_id = run_id(result)

    listed = cli("outputs", execution_id)
    assert listed.returncode == 0, listed.stderr
    for path in OUTPUT_FILES:
        assert path in listed.stdout
    listed_json = json.loads(cli("outputs", execution_id, "--json").stdout)
    assert {item["path"]: item["digest"] for item in listed_json} == {
        path: digests.of_bytes(data) for path, data in OUTPUT_FILES.items()
    }

    everything = cli("download", execution_id, "--output-dir", "all")
    assert everything.returncode == 0, everything.stderr
    assert _files_under(workdir / "all") == OUTPUT_FILES

    one = cli("download", execution_id, "--output-dir", "one", "--file", "out/summary.txt")
    assert one.returncode == 0, one.stderr
    assert _files_under(workdir / "one") == {"out/summary.txt": b"summary\n"}

    unknown = cli("download", execution_id, "--output-dir", "none", "--file", "nope.txt")
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("error:") and "nope.txt" in unknown.stderr
    assert not (workdir / "none").exists()


def test_detach_prints_only_the_id_and_wait_reattaches(cli: Cli, workdir: Path) -> None:
    (workdir / "later.py").write_text(
        "import sys, time\n"
        "time.sleep(0.5)\n"
        "print('first line')\n"
        "print('complaint', file=sys.stderr)\n"
        "open('result.txt', 'w').write('done\\n')\n"
        "print('last line')\n"
        "sys.exit(5)\n"
    )

    submitted = cli("run", "--detach", "later.py")

    assert submitted.returncode == 0, submitted.stderr
    assert re.fullmatch(r"exec_[A-Za-z0-9]+\n", submitted.stdout)
    execution_id = submitted.stdout.strip()
    assert not (workdir / "result.txt").exists()

    waited = cli("wait", execution_id)

    assert waited.returncode == 5
    assert waited.stdout == "first line\nlast line\n"
    assert "complaint\n" in waited.stderr
    assert (workdir / "result.txt").read_text() == "done\n"


def test_include_sends_a_file_the_script_reads_without_naming_it(cli: Cli, workdir: Path) -> None:
    (workdir / "extra.txt").write_text("extra data\n")
    (workdir / "reader.py").write_text("print(open('extra.txt').read().strip())\n")
    # the project tree travels, but not what .rgridignore leaves out (nor big files over budget)
    (workdir / ".rgridignore").write_text("extra.txt\n")

    without = cli("run", "reader.py")
    assert without.returncode == 1
    assert "FileNotFoundError" in without.stderr

    result = cli("run", "--include", "extra.txt", "reader.py")

    assert result.returncode == 0, result.stderr
    assert result.stdout == "extra data\n"
    assert (workdir / "extra.txt").read_text() == "extra data\n"
