"""Acceptance: the result cache matches on the files a run read (issue 14).

Re-running after the run's outputs came back into the project hits, so does one after a file
the script never read was edited; editing a file it read, directly, through a subprocess or
through C code, misses and `rgrid status` names the file. Where reads are not observed
(``RGRID_READ_TRACKING=off``) the whole input tree must match, as before. The project's extra
files are sent with ``--include`` (``out`` included, so outputs travel back as inputs).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.acceptance.conftest import run_id
from tests.acceptance.test_cache import cache_line, started
from tests.conftest import Cli, LiveServer, make_server

#: reads four files four ways, writes one output with random bytes (a re-run is visible)
SCRIPT = """\
import ctypes, os, sqlite3, subprocess
direct = open("data/b.csv").read()
piped = subprocess.run(["cat", "data/piped.txt"], capture_output=True, check=True).stdout
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.fread.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
buffer = ctypes.create_string_buffer(64)
handle = libc.fopen(b"data/native.bin", b"rb")
native = buffer.raw[: libc.fread(buffer, 1, 64, handle)]
libc.fclose(handle)
rows = sqlite3.connect("data/table.db").execute("select v from t").fetchall()
os.makedirs("out", exist_ok=True)
with open("out/result.txt", "w") as out:
    print(direct, piped, native, rows, os.urandom(8).hex(), file=out)
print("done")
"""

COMMAND = ["run", "--include", "README", "--include", "data", "--include", "out", "reader.py"]


def project(workdir: Path) -> None:
    (workdir / "reader.py").write_text(SCRIPT)
    (workdir / "README").write_text("how to use this\n")
    (workdir / "out").mkdir()
    data = workdir / "data"
    data.mkdir()
    (data / "b.csv").write_text("1,2\n")
    (data / "piped.txt").write_text("piped\n")
    (data / "native.bin").write_bytes(b"\x01native")
    with sqlite3.connect(data / "table.db") as db:
        db.execute("create table t (v)")
        db.execute("insert into t values ('row')")


def set_row(db_path: Path, value: str) -> None:
    with sqlite3.connect(db_path) as db:
        db.execute("update t set v = ?", (value,))


def run_hits(cli: Cli, server: LiveServer, source: str) -> str:
    before = started(server)
    result = cli(*COMMAND)
    assert result.returncode == 0, result.stderr
    assert "rgrid: cached" in result.stderr and started(server) == before
    assert cache_line(cli, run_id(result)) == f"hit from {source}"
    return run_id(result)


def run_misses(cli: Cli, server: LiveServer) -> str:
    before = started(server)
    result = cli(*COMMAND)
    assert result.returncode == 0, result.stderr
    assert "rgrid: cached" not in result.stderr and started(server) == before + 1
    return run_id(result)


def test_outputs_back_and_unread_edits_hit_edits_of_read_files_miss_and_are_named(
    account_cli: Cli, workdir: Path, live_server: LiveServer
) -> None:
    project(workdir)
    previous = run_misses(account_cli, live_server)
    produced = (workdir / "out" / "result.txt").read_bytes()

    run_hits(account_cli, live_server, previous)  # its output is now among the inputs
    (workdir / "README").write_text("edited, never read by the script\n")
    run_hits(account_cli, live_server, previous)
    assert (workdir / "out" / "result.txt").read_bytes() == produced  # the first run's bytes

    edits = [
        ("data/b.csv", "read", lambda: (workdir / "data" / "b.csv").write_text("3,4\n")),
        ("data/piped.txt", "read", lambda: (workdir / "data" / "piped.txt").write_text("x\n")),
        ("data/native.bin", "read", lambda: (workdir / "data" / "native.bin").write_bytes(b"y")),
        # SQLite opens its database read-write even to query it: the kernel copies it up
        # from the tree's shared layer first, reading it (docs/sandbox.md)
        ("data/table.db", "read", lambda: set_row(workdir / "data" / "table.db", "z")),
    ]
    for path, how, edit in edits:
        edit()
        current = run_misses(account_cli, live_server)
        expected = f"miss: input {path} changed ({how} by {previous})"
        assert cache_line(account_cli, current) == expected
        assert (workdir / "out" / "result.txt").read_bytes() != produced
        produced = (workdir / "out" / "result.txt").read_bytes()
        previous = current
    run_hits(account_cli, live_server, previous)


def test_without_observed_reads_the_whole_input_tree_must_match(
    tmp_path: Path, workdir: Path
) -> None:
    server = make_server(tmp_path / "untracked", RGRID_READ_TRACKING="off")
    server.start()
    try:
        cli = Cli(cwd=workdir, env=server.cli_env())
        project(workdir)
        result = workdir / "out" / "result.txt"
        first = run_misses(cli, server)
        result.unlink()
        (workdir / "README").write_text("edited, never read by the script\n")
        second = run_misses(cli, server)
        assert cache_line(cli, second) == f"miss: an input changed: README (since {first})"
        result.unlink()
        hit = run_hits(cli, server, second)  # the very same tree
        third = run_misses(cli, server)  # its output came back: the tree differs
        assert cache_line(cli, third) == f"miss: an input was added: out/result.txt (since {hit})"
    finally:
        server.stop()
