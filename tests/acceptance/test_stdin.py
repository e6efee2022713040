"""Acceptance: rgrid's stdin becomes the script's stdin, as with python (issue 14, item 5).

Each script runs with plain ``python`` and with ``rgrid run`` on the same stdin, side by side;
stdout and exit codes must match. A terminal gives the script end-of-file, a batch refuses a
piped stdin, and the result cache keys on what was piped.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import IO

import pytest
from tests.acceptance.conftest import json_of, run_id, status_of
from tests.conftest import RGRID_BIN, Cli

#: the stdin of the side-by-side runs: text with a header, a blank line, no final newline
SALES = "region\tamount\nnorth\t10\nsouth\t5\nnorth\t2.5\n\nwest\t1"

SCRIPTS = {
    "read": """\
        import os, sys
        data = sys.stdin.read()
        print(len(data), repr(data[-12:]), sorted(os.listdir(".")))
    """,
    "lines": """\
        import sys
        for number, line in enumerate(sys.stdin, 1):
            print(number, line.rstrip("\\n").upper())
    """,
    "csv": """\
        import csv, sys
        totals = {}
        for row in csv.DictReader(sys.stdin, delimiter="\\t"):
            if row["region"]:
                totals[row["region"]] = totals.get(row["region"], 0) + float(row["amount"])
        for region, total in sorted(totals.items()):
            print(f"{region}\\t{total}")
    """,
}

#: hashes whatever stdin holds, in chunks, as bytes
DIGEST = """\
import hashlib, sys
digest, size = hashlib.sha256(), 0
while chunk := sys.stdin.buffer.read(1 << 20):
    digest.update(chunk)
    size += len(chunk)
print(size, digest.hexdigest())
"""

#: runs a command, then reports its peak resident memory (KiB) on the last stderr line
PEAK_RSS = """\
import resource, subprocess, sys
code = subprocess.call(sys.argv[1:])
print("peak-rss-kib", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)
sys.exit(code)
"""


def write(project: Path, name: str, source: str) -> None:
    (project / name).write_text(textwrap.dedent(source))


def both(
    cli: Cli, project: Path, script: str, stdin: IO[bytes] | int | None, *rgrid: str
) -> tuple[subprocess.CompletedProcess[bytes], subprocess.CompletedProcess[bytes]]:
    """``python SCRIPT`` then ``rgrid run SCRIPT``, each on ``stdin`` (a file is rewound)."""
    results = []
    for argv in ([sys.executable, script], [str(RGRID_BIN), *rgrid, "run", script]):
        if not isinstance(stdin, int | None):
            stdin.seek(0)
        env = cli.env if argv[0] == str(RGRID_BIN) else {"PATH": os.environ["PATH"]}
        results.append(
            subprocess.run(
                argv, cwd=project, env=env, stdin=stdin, capture_output=True, timeout=300
            )
        )
    return results[0], results[1]


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_the_script_reads_the_piped_stdin_as_with_python(
    account_cli: Cli, workdir: Path, tmp_path: Path, name: str
) -> None:
    """read(), line by line and csv: the same output; the stdin is no file of the tree."""
    write(workdir, "s.py", SCRIPTS[name])
    sales = tmp_path / "sales.tsv"
    sales.write_text(SALES)
    with sales.open("rb") as stdin:
        local, remote = both(account_cli, workdir, "s.py", stdin)
    assert local.returncode == 0, local.stderr
    assert (remote.returncode, remote.stdout) == (0, local.stdout), remote.stderr
    assert sorted(os.listdir(workdir)) == ["s.py"]  # no output came back either
    piped = account_cli("run", "s.py", input=SALES)  # a pipe rather than a redirected file
    assert (piped.returncode, piped.stdout) == (0, local.stdout.decode()), piped.stderr


def test_a_50_mb_binary_stdin_arrives_whole_and_the_cli_stays_small(
    account_cli: Cli, workdir: Path, tmp_path: Path
) -> None:
    """Streamed, compressed on the way: the CLI's peak memory stays far below the data."""
    write(workdir, "digest.py", DIGEST)
    (tmp_path / "peak.py").write_text(PEAK_RSS)
    big = tmp_path / "big.bin"
    with big.open("wb") as out:
        for _ in range(50):
            out.write(os.urandom(1024 * 1024))
    env = {**account_cli.env, "RGRID_COMPRESSION": "always"}
    with big.open("rb") as stdin:
        local = subprocess.run(
            [sys.executable, "digest.py"], cwd=workdir, stdin=stdin, capture_output=True
        )
        stdin.seek(0)
        remote = subprocess.run(
            [sys.executable, str(tmp_path / "peak.py"), str(RGRID_BIN), "run", "digest.py"],
            cwd=workdir,
            env=env,
            stdin=stdin,
            capture_output=True,
            timeout=600,
        )
    assert (
        local.stdout == f"{50 * 1024**2} {hashlib.sha256(big.read_bytes()).hexdigest()}\n".encode()
    )
    assert (remote.returncode, remote.stdout) == (0, local.stdout), remote.stderr
    peak_kib = int(remote.stderr.decode().split()[-1])
    # ~45 MiB here, about what a run with no stdin takes: holding the data would add 50 MiB
    assert peak_kib < 80 * 1024, f"the CLI peaked at {peak_kib} KiB"
    execution = status_of(account_cli, run_id_from(remote.stderr))
    assert execution["stdin_size"] == 50 * 1024**2


def run_id_from(stderr: bytes) -> str:
    from tests.conftest import CliResult

    return run_id(CliResult(0, "", stderr.decode()))


def test_the_cache_keys_on_stdin(account_cli: Cli, workdir: Path) -> None:
    """The same stdin is a hit; a changed one misses and `rgrid status` names stdin."""
    write(workdir, "s.py", SCRIPTS["csv"])
    first = account_cli("run", "s.py", input=SALES)
    assert first.returncode == 0, first.stderr
    same = account_cli("run", "s.py", input=SALES)
    assert (same.returncode, same.stdout) == (0, first.stdout), same.stderr
    assert status_of(account_cli, run_id(same))["cached_from"] == run_id(first)
    changed = account_cli("run", "s.py", input=SALES.replace("north\t10", "north\t11"))
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout != first.stdout
    execution = status_of(account_cli, run_id(changed))
    assert execution["cached_from"] is None
    assert execution["cache"] == f"miss: stdin changed (since {run_id(same)})"
    shown = account_cli("status", run_id(changed)).stdout
    assert "stdin changed" in shown and f"piped, {len(SALES)} B" in shown


def test_a_terminal_stdin_gives_the_script_end_of_file(account_cli: Cli, workdir: Path) -> None:
    write(workdir, "s.py", "import sys\nprint(repr(sys.stdin.read()), sys.stdin.isatty())\n")
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [str(RGRID_BIN), "run", "s.py"],
            cwd=workdir,
            env=account_cli.env,
            stdin=follower,
            capture_output=True,
            timeout=120,
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert (done.returncode, done.stdout) == (0, b"'' False\n"), done.stderr
    assert status_of(account_cli, run_id_from(done.stderr))["stdin_size"] is None


@pytest.mark.parametrize("source", ["/dev/null", "empty pipe"])
def test_an_empty_stdin_is_read_as_empty(account_cli: Cli, workdir: Path, source: str) -> None:
    write(workdir, "s.py", "import sys\nprint(repr(sys.stdin.buffer.read()))\n")
    if source == "/dev/null":
        with open(os.devnull, "rb") as stdin:
            local, remote = both(account_cli, workdir, "s.py", stdin)
    else:
        local, remote = both(account_cli, workdir, "s.py", subprocess.PIPE)
    assert local.stdout == b"b''\n"
    assert (remote.returncode, remote.stdout) == (0, local.stdout), remote.stderr
    assert status_of(account_cli, run_id_from(remote.stderr))["stdin_size"] == 0


def test_a_batch_refuses_piped_stdin_and_submits_nothing(account_cli: Cli, workdir: Path) -> None:
    write(workdir, "s.py", "import sys\nprint(open(sys.argv[1]).read())\n")
    (workdir / "a.csv").write_text("1\n")
    refused = account_cli("run", "--batch", "*.csv", "s.py", input="data for nobody\n")
    assert refused.returncode in (1, 2)
    assert "--batch cannot forward stdin" in refused.stderr
    assert json_of(account_cli("list", "--json"))["data"] == []
    with open(os.devnull, "rb") as nothing:  # how cron and CI start commands: still runs
        done = subprocess.run(
            [str(RGRID_BIN), "run", "--batch", "*.csv", "s.py"],
            cwd=workdir,
            env=account_cli.env,
            stdin=nothing,
            capture_output=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    assert len(json.loads(account_cli("list", "--json").stdout)["data"]) == 1


def test_a_pipe_nobody_writes_to_gets_one_notice(account_cli: Cli, workdir: Path) -> None:
    """rgrid must read stdin to its end before submitting: when nothing comes, it says so."""
    write(workdir, "s.py", SCRIPTS["lines"])
    process = subprocess.Popen(
        [str(RGRID_BIN), "run", "s.py"],
        cwd=workdir,
        env=account_cli.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        notice = process.stderr.readline().decode()
        assert "reading stdin" in notice and "< /dev/null" in notice
        stdout, _ = process.communicate(b"late\n", timeout=120)
    finally:
        process.kill()
    assert (process.returncode, stdout) == (0, b"1 LATE\n")
