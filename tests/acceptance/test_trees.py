"""Acceptance: the project tree is sent once and named after (issue 14). A re-run of an unchanged
project names its tree and sends nothing of it; a changed tree is sent again, only the changed
file's content with it; a tree is an account's own; bad trees are refused with nothing stored;
a tree whose files expired is sent anew by the next run."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.acceptance.conftest import new_account, run_id, wait_for
from tests.conftest import Cli, LiveServer, blob_name, make_server

from rgrid import digests
from rgrid.digests import of_tree

READER = """\
import os
print(open("data/d1/f03.txt").read().strip())
print(sorted(os.listdir("models")), sorted(os.listdir("data")))
"""


def make_project(root: Path) -> None:
    (root / "read.py").write_text(READER)
    for folder in range(3):
        (root / "data" / f"d{folder}").mkdir(parents=True)
        for index in range(5):
            path = root / "data" / f"d{folder}" / f"f{index:02d}.txt"
            path.write_text(f"file {folder}/{index}\n")
    (root / "models").mkdir()  # empty: part of the tree all the same
    old = time.time() - 60  # outside the hash cache's racy window
    for path in root.rglob("*"):
        os.utime(path, (old, old))


def test_an_unchanged_tree_is_named_and_a_changed_one_sent_again(
    account_cli: Cli, workdir: Path
) -> None:
    make_project(workdir)
    cli = Cli(cwd=workdir, env={**account_cli.env, "RGRID_DEBUG": "1"})

    first = cli("run", "read.py")
    again = cli("run", "--no-cache", "read.py")

    expected = "file 1/3\n[] ['d0', 'd1', 'd2']\n"
    assert (first.returncode, first.stdout) == (0, expected), first.stderr
    assert "project tree " in first.stderr and ": sent" in first.stderr
    assert (again.returncode, again.stdout) == (0, expected), again.stderr
    assert ": already on the grid" in again.stderr
    assert "rgrid: uploaded nothing, 16 already on the grid" in again.stderr

    (workdir / "data" / "d1" / "f03.txt").write_text("changed\n")
    changed = cli("run", "read.py")

    assert (changed.returncode, changed.stdout) == (0, "changed\n[] ['d0', 'd1', 'd2']\n")
    assert ": sent" in changed.stderr
    assert "rgrid: uploaded 1 file (8 B), 15 already on the grid" in changed.stderr
    status = cli("status", run_id(changed)).stdout.splitlines()
    cache = [line.split(None, 1)[1] for line in status if line.startswith("cache ")]
    assert cache == [f"miss: input data/d1/f03.txt changed (read by {run_id(again)})"]


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _upload(server: LiveServer, key: str, content: bytes) -> str:
    sha = digests.of_bytes(content)
    response = httpx.put(f"{server.url}/api/v1/blobs/{sha}", content=content, headers=_auth(key))
    assert response.status_code in (200, 201), response.text
    return sha


def _error(response: httpx.Response) -> tuple[int, str, str]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["message"]


def test_bad_trees_are_refused_and_a_tree_is_its_accounts_own(
    live_server: LiveServer, cli: Cli
) -> None:
    _, key = new_account(cli)
    _, other_key = new_account(cli)
    script = _upload(live_server, key, b"print(open('a.txt').read())\n")
    data = _upload(live_server, key, b"tree data\n")
    files = [{"path": "a.txt", "digest": data, "size": 10}]
    digest = of_tree([("a.txt", data, 10)], ["empty"])
    trees = f"{live_server.url}/api/v1/trees"

    wrong = httpx.put(
        f"{trees}/blake3:{'0' * 64}", json={"files": files, "dirs": ["empty"]}, headers=_auth(key)
    )
    assert _error(wrong)[:2] == (422, "VALIDATION_ERROR")
    assert digest in _error(wrong)[2]
    for bad in ("../a.txt", "/etc/passwd", "x//a.txt", "./a.txt"):
        listing = [{"path": bad, "digest": data, "size": 10}]
        name = of_tree([(bad, data, 10)], [])
        refused = httpx.put(f"{trees}/{name}", json={"files": listing}, headers=_auth(key))
        assert _error(refused)[:2] == (422, "UNSAFE_PATH"), bad
    for listing, dirs in (
        ([("a.txt", data, 10), ("a.txt/inner", data, 10)], []),  # a file and a directory
        ([("a.txt", data, 10)], ["a.txt"]),
        ([("a.txt", "../" + "0" * 61, 10)], []),  # not a content hash
    ):
        body = {"files": [{"path": p, "digest": h, "size": n} for p, h, n in listing]}
        name = of_tree(listing, dirs)
        bad = httpx.put(f"{trees}/{name}", json={**body, "dirs": dirs}, headers=_auth(key))
        assert _error(bad)[:2] == (422, "VALIDATION_ERROR"), listing
    unknown_blob = [{"path": "b.txt", "digest": "blake3:" + "1" * 64, "size": 3}]
    name = of_tree([("b.txt", "blake3:" + "1" * 64, 3)], [])
    missing = httpx.put(f"{trees}/{name}", json={"files": unknown_blob}, headers=_auth(key))
    assert _error(missing)[:2] == (422, "VALIDATION_ERROR") and "b.txt" in _error(missing)[2]

    run = {
        "script": "main.py",
        "files": [{"path": "main.py", "digest": script, "size": 28}],
        "tree": digest,
    }
    executions = f"{live_server.url}/api/v1/executions"
    unknown = httpx.post(executions, json=run, headers=_auth(key))
    assert _error(unknown)[:2] == (422, "TREE_UNKNOWN")
    assert httpx.get(executions, headers=_auth(key)).json()["data"] == []  # nothing queued

    stored = httpx.put(
        f"{trees}/{digest}", json={"files": files, "dirs": ["empty"]}, headers=_auth(key)
    )
    assert stored.status_code == 200 and stored.json() == {
        "digest": digest,
        "files": 1,
        "bytes": 10,
    }
    again = httpx.put(
        f"{trees}/{digest}", json={"files": files, "dirs": ["empty"]}, headers=_auth(key)
    )
    assert again.status_code == 200  # idempotent
    both = {
        **run,
        "files": [*run["files"], {"path": "a.txt", "digest": data, "size": 10, "tree": True}],
    }
    mixed = httpx.post(executions, json=both, headers=_auth(key))
    assert _error(mixed)[:2] == (422, "VALIDATION_ERROR")

    # another account knows neither the tree nor its files, whatever it guesses
    foreign = httpx.post(executions, json=run, headers=_auth(other_key))
    assert _error(foreign)[:2] == (422, "TREE_UNKNOWN")
    claimed = httpx.put(
        f"{trees}/{digest}", json={"files": files, "dirs": ["empty"]}, headers=_auth(other_key)
    )
    assert _error(claimed)[:2] == (422, "VALIDATION_ERROR") and "a.txt" in _error(claimed)[2]

    accepted = httpx.post(executions, json=run, headers=_auth(key))
    assert accepted.status_code in (200, 201), accepted.text
    assert accepted.json()["state"] in ("queued", "running", "succeeded")


RETENTION_S = 3.0


@pytest.fixture
def short_retention(tmp_path: Path) -> Iterator[LiveServer]:
    server = make_server(tmp_path, RGRID_RETENTION_DAYS=str(RETENTION_S / 86400))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_tree_whose_files_expired_is_sent_anew(
    short_retention: LiveServer, tmp_path: Path
) -> None:
    workdir = tmp_path / "project"
    workdir.mkdir()
    make_project(workdir)
    cli = Cli(cwd=workdir, env={**short_retention.cli_env(), "RGRID_DEBUG": "1"})
    first = cli("run", "read.py")
    assert first.returncode == 0 and ": sent" in first.stderr, first.stderr
    data = digests.of_bytes(b"file 1/3\n")
    blobs = short_retention.home / "blobs"
    assert [p for p in blobs.rglob(blob_name(data)) if p.is_file()]

    # the janitor runs every second here: the period plus a few rounds
    wait_for(
        lambda: not [p for p in blobs.rglob(blob_name(data)) if p.is_file()] or None,
        timeout=RETENTION_S + 10,
        interval=0.2,
    )
    again = cli("run", "read.py")

    assert (again.returncode, again.stdout) == (0, first.stdout), again.stderr
    assert ": sent" in again.stderr
    assert "uploaded 16 files" in again.stderr
