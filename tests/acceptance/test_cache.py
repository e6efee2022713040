"""Acceptance: the result cache — an identical run comes back at once without running, a changed
one runs and `rgrid status` names what changed; inputs are never uploaded twice (issue 7).

Every test drives the installed ``rgrid`` binary against a real grid server. The script writes
random bytes, so an output that comes back byte-identical was not produced by a second run.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from tests.acceptance.conftest import json_of, new_account, run_id, settled, status_of
from tests.conftest import Cli, LiveServer

from rgrid import digests

#: prints its arguments and an env value, writes random bytes (so a re-run is visible)
SCRIPT = """\
import os, sys
import helper
data = open(sys.argv[1]).read()
print("args", sys.argv[1:], "A", os.environ.get("A"), helper.NAME, data.strip())
print("to stderr", file=sys.stderr)
os.makedirs("out", exist_ok=True)
open("out/random.bin", "wb").write(os.urandom(64))
"""


@pytest.fixture(autouse=True)
def _nothing_in_flight(live_server: LiveServer) -> None:
    """The tests count the executions the shared grid starts: one an earlier test left queued
    must not start during them."""
    settled(live_server)


def started(server: LiveServer) -> int:
    text = server.metrics()
    match = re.search(r"^rgrid_executions_started_total ([0-9.]+)$", text, re.MULTILINE)
    assert match, text
    return int(float(match.group(1)))


def project(workdir: Path) -> None:
    (workdir / "main.py").write_text(SCRIPT)
    (workdir / "helper.py").write_text("NAME = 'helper-1'\n")
    (workdir / "data.csv").write_text("1,2,3\n")


def cache_line(cli: Cli, execution_id: str) -> str:
    lines = cli("status", execution_id).stdout.splitlines()
    found = [line.split(None, 1)[1] for line in lines if line.startswith("cache ")]
    assert found, lines
    return found[0]


def test_an_identical_run_is_served_without_running_anything(
    account_cli: Cli, workdir: Path, live_server: LiveServer
) -> None:
    project(workdir)
    first = account_cli("run", "--env", "A=1", "main.py", "data.csv")
    assert first.returncode == 0, first.stderr
    first_id = run_id(first)
    original = (workdir / "out" / "random.bin").read_bytes()
    assert cache_line(account_cli, first_id) == "miss: no earlier run of main.py"
    (workdir / "out" / "random.bin").unlink()
    before = started(live_server)

    again = account_cli("run", "--env", "A=1", "main.py", "data.csv")

    assert again.returncode == 0, again.stderr
    assert started(live_server) == before  # no process was started for it
    again_id = run_id(again)
    assert again_id != first_id
    assert (workdir / "out" / "random.bin").read_bytes() == original  # the original's bytes
    assert again.stdout == first.stdout  # its log replayed
    assert "to stderr" in again.stderr
    notice = [line for line in again.stderr.splitlines() if line.startswith("rgrid: cached")]
    assert len(notice) == 1 and first_id in notice[0] and "--no-cache" in notice[0]
    assert "uploaded nothing, 3 already on the grid" in again.stderr
    status = status_of(account_cli, again_id)
    assert status["state"] == "succeeded" and status["exit_code"] == 0
    assert status["cached_from"] == first_id and status["attempt"] == 0
    assert status["worker"] is None
    assert cache_line(account_cli, again_id) == f"hit from {first_id}"
    outputs = json_of(account_cli("outputs", again_id, "--json"))
    assert [(o["path"], o["digest"]) for o in outputs] == [
        ("out/random.bin", digests.of_bytes(original))
    ]
    listed = account_cli("list").stdout
    assert re.search(rf"{again_id} +succeeded \(cached\)", listed), listed

    third = account_cli("run", "--env", "A=1", "main.py", "data.csv")  # a hit of a hit
    assert status_of(account_cli, run_id(third))["cached_from"] == first_id
    assert "1 already in place" in third.stderr  # the same bytes are not fetched again
    assert (workdir / "out" / "random.bin").read_bytes() == original


def test_each_changed_part_is_a_miss_and_status_names_it(
    account_cli: Cli, workdir: Path, live_server: LiveServer
) -> None:
    project(workdir)
    base = ["--env", "A=1", "main.py", "data.csv"]
    previous = run_id(account_cli("run", *base))
    changes = [
        (lambda: (workdir / "main.py").write_text(SCRIPT + "# v2\n"), base, "the script changed"),
        (
            lambda: (workdir / "helper.py").write_text("NAME = 'helper-2'\n"),
            base,
            "local module helper.py changed (read by {previous})",
        ),
        (
            lambda: (workdir / "requirements.txt").write_text("pyyaml\n"),
            base,
            "the dependencies changed",
        ),
        (
            lambda: (workdir / "data.csv").write_text("4,5,6\n"),
            base,
            "input data.csv changed (read by {previous})",
        ),
        (lambda: None, [*base, "--verbose"], "the arguments changed"),
        (lambda: None, ["--env", "A=2", "main.py", "data.csv", "--verbose"], None),
    ]
    for change, args, expected in changes:
        change()
        before = started(live_server)
        result = account_cli("run", *args, timeout=300)
        assert result.returncode == 0, result.stderr
        assert started(live_server) == before + 1, args  # it ran
        assert "rgrid: cached" not in result.stderr
        current = run_id(result)
        wanted = expected or "an environment variable changed: A"
        if "{previous}" not in wanted:
            wanted += " (since {previous})"
        assert cache_line(account_cli, current) == "miss: " + wanted.format(previous=previous)
        previous = current


def test_failed_runs_are_never_reused(account_cli: Cli, workdir: Path) -> None:
    (workdir / "fail.py").write_text("import sys; print('trying'); sys.exit(4)\n")
    first = account_cli("run", "fail.py")
    assert first.returncode == 4
    second = account_cli("run", "fail.py")
    assert second.returncode == 4 and "rgrid: cached" not in second.stderr
    status = status_of(account_cli, run_id(second))
    assert status["cached_from"] is None and status["attempt"] == 1
    assert cache_line(account_cli, run_id(second)) == (
        f"miss: the same run {run_id(first)} failed (only succeeded runs are reused)"
    )


def test_a_run_whose_outputs_are_gone_is_not_reused(
    account_cli: Cli, workdir: Path, live_server: LiveServer
) -> None:
    project(workdir)
    first = account_cli("run", "main.py", "data.csv")
    assert first.returncode == 0, first.stderr
    sha = digests.of_bytes((workdir / "out" / "random.bin").read_bytes())
    live_server.delete_blob(sha)  # as retention does when the outputs expire
    # the output now lies in the project tree, which travels: this test's grid lost the blob
    # behind its database's back, so the local copy goes too (retention would have marked it
    # missing, and the CLI would upload it again)
    (workdir / "out" / "random.bin").unlink()

    before = started(live_server)
    again = account_cli("run", "main.py", "data.csv")
    assert again.returncode == 0 and "rgrid: cached" not in again.stderr
    assert started(live_server) == before + 1
    assert cache_line(account_cli, run_id(again)) == (
        f"miss: the outputs of {run_id(first)} are no longer kept (expired or deleted)"
    )


def test_no_cache_flag_and_project_config_run_it_again(
    account_cli: Cli, workdir: Path, live_server: LiveServer
) -> None:
    project(workdir)
    assert account_cli("run", "main.py", "data.csv").returncode == 0
    original = (workdir / "out" / "random.bin").read_bytes()

    bypassed = account_cli("run", "--no-cache", "main.py", "data.csv")
    assert bypassed.returncode == 0 and "rgrid: cached" not in bypassed.stderr
    assert (workdir / "out" / "random.bin").read_bytes() != original
    assert cache_line(account_cli, run_id(bypassed)) == "bypassed (--no-cache)"

    (workdir / ".rgrid").mkdir()
    (workdir / ".rgrid" / "config.toml").write_text("# this project\ncache = false\n")
    before = started(live_server)
    configured = account_cli("run", "main.py", "data.csv")
    assert configured.returncode == 0 and started(live_server) == before + 1
    assert cache_line(account_cli, run_id(configured)) == "bypassed (--no-cache)"
    (workdir / "sub").mkdir()  # the nearest config upwards applies
    nested = Cli(cwd=workdir / "sub", env=account_cli.env)
    assert nested("run", "../main.py", "../data.csv").returncode == 0
    assert started(live_server) == before + 2

    (workdir / ".rgrid" / "config.toml").write_text('cache = "no"\n')
    listed = len(json_of(account_cli("list", "--json"))["data"])
    bad = account_cli("run", "main.py", "data.csv")
    assert (
        bad.returncode == 1 and 'cache must be true, false, "auto", "always" or "off"' in bad.stderr
    )
    (workdir / ".rgrid" / "config.toml").write_text("cahce = false\n")
    typo = account_cli("run", "main.py", "data.csv")
    assert typo.returncode == 1 and "unknown setting 'cahce'" in typo.stderr
    (workdir / ".rgrid" / "config.toml").write_text("cache = \n")
    broken = account_cli("run", "main.py", "data.csv")
    assert broken.returncode == 1 and "not valid TOML" in broken.stderr
    assert len(json_of(account_cli("list", "--json"))["data"]) == listed  # nothing submitted


def test_accounts_share_no_cache_entries_and_no_blobs(
    cli: Cli, workdir: Path, live_server: LiveServer
) -> None:
    project(workdir)
    _, key_a = new_account(cli)
    _, key_b = new_account(cli)
    alice = Cli(cwd=workdir, env=live_server.cli_env(key_a))
    bob = Cli(cwd=workdir, env=live_server.cli_env(key_b))
    assert alice("run", "main.py", "data.csv").returncode == 0
    alices = (workdir / "out" / "random.bin").read_bytes()

    before = started(live_server)
    result = bob("run", "main.py", "data.csv")
    assert result.returncode == 0 and "rgrid: cached" not in result.stderr
    assert started(live_server) == before + 1
    assert (workdir / "out" / "random.bin").read_bytes() != alices
    # Alice's copies are not Bob's: the project (3 files, and Alice's output, which now lies in
    # the project tree) is uploaded again in full
    assert "uploaded 4 files" in result.stderr and "0 already on the grid" in result.stderr
    assert cache_line(bob, run_id(result)) == "miss: no earlier run of main.py"

    # A blob only Alice has and one nobody has look the same to Bob.
    alice_only, nobody = b"alice's secret bytes\n", b"nobody has these bytes\n"
    (workdir / "secret.txt").write_bytes(alice_only)
    assert alice("run", "main.py", "secret.txt").returncode == 0
    hashes = [digests.of_bytes(d) for d in (alice_only, nobody)]
    headers = {"Authorization": f"Bearer {key_b}"}
    asked = httpx.post(
        f"{live_server.url}/api/v1/blobs/missing", json={"digests": hashes}, headers=headers
    )
    assert asked.status_code == 200 and asked.json()["missing"] == hashes
    puts = [
        httpx.put(f"{live_server.url}/api/v1/blobs/{sha}", content=data, headers=headers)
        for sha, data in zip(hashes, (alice_only, nobody), strict=True)
    ]
    assert [p.status_code for p in puts] == [puts[1].status_code] * 2
    assert [sorted(p.json()) for p in puts] == [sorted(puts[1].json())] * 2


def test_rerunning_a_100_item_batch_uploads_nothing_and_reuses_every_result(
    account_cli: Cli, workdir: Path, live_server: LiveServer
) -> None:
    (workdir / "item.py").write_text(
        "import os, sys\nos.makedirs('out', exist_ok=True)\n"
        "open('out/r.bin', 'wb').write(os.urandom(16) + open(sys.argv[1], 'rb').read())\n"
    )
    shared = workdir / "shared.txt"
    shared.write_text("used by every item\n")
    (workdir / "in").mkdir()
    for i in range(100):
        (workdir / "in" / f"i{i:03d}.txt").write_text(f"{i}\n")
    first = account_cli("run", "--batch", "in/*.txt", "--include", "shared.txt", "item.py")
    assert first.returncode == 0, first.stderr
    assert "uploaded 102 files" in first.stderr  # the script, the shared file once, 100 inputs
    assert "rgrid: estimate: 100 item(s) of item.py" in first.stderr  # shown before it starts
    assert "no earlier run of item.py: using the default of 10.0s an item" in first.stderr
    produced = {p: p.read_bytes() for p in (workdir / "outputs").rglob("r.bin")}
    assert len(produced) == 100
    for path in produced:
        path.unlink()
    before = started(live_server)

    again = account_cli("run", "--batch", "in/*.txt", "--include", "shared.txt", "item.py")

    assert again.returncode == 0, again.stderr
    assert "(uploaded nothing, 102 already on the grid)" in again.stderr
    assert "100 succeeded, 0 failed, 100 cached (of 100)" in again.stderr
    assert started(live_server) == before
    assert {p: p.read_bytes() for p in (workdir / "outputs").rglob("r.bin")} == produced
