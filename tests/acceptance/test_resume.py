"""Acceptance: an upload cut halfway (the CLI killed) leaves no blob; running again resumes it
instead of starting over (issue 8)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
from tests.acceptance.conftest import run_id, status_of
from tests.conftest import RGRID_BIN, Cli, LiveServer

from rgrid import digests

SIZE = 768 * 1024 * 1024  # big enough to be caught halfway on a fast loopback


def wire_received(server: LiveServer) -> int:
    text = server.metrics()
    match = re.search(r"^rgrid_blob_wire_bytes_received_total ([0-9.e+]+)$", text, re.M)
    assert match, text
    return int(float(match.group(1)))


def missing(server: LiveServer, key: str, sha: str) -> bool:
    answer = httpx.post(
        f"{server.url}/api/v1/blobs/missing",
        json={"digests": [sha]},
        headers={"Authorization": f"Bearer {key}"},
    )
    return answer.json()["missing"] == [sha]


def test_a_killed_upload_stores_nothing_and_the_next_run_resumes_it(
    account_cli: Cli, workdir: Path, live_server: LiveServer
) -> None:
    (workdir / "size.py").write_text("import os, sys\nprint(os.path.getsize(sys.argv[1]))\n")
    big = workdir / "big.zip"  # incompressible, and named so: sent as it is
    with big.open("wb") as handle:
        for _ in range(SIZE // (64 * 1024 * 1024)):
            handle.write(os.urandom(64 * 1024 * 1024))
    digest = digests.of_file(big)
    key = account_cli.env["RGRID_API_KEY"]
    staged = list((live_server.home / "uploads").glob(f"*/{digests.hex_of(digest)}.blake3.part"))
    assert staged == []

    before = wire_received(live_server)
    cli = subprocess.Popen(
        [str(RGRID_BIN), "run", "size.py", "big.zip"],
        cwd=workdir,
        env=account_cli.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while wire_received(live_server) - before < SIZE // 4:  # a quarter is there: kill it
        assert cli.poll() is None, "the upload finished before it could be cut"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    cli.send_signal(signal.SIGKILL)
    cli.wait()
    time.sleep(0.5)  # the grid notices the closed connection
    cut_at = wire_received(live_server) - before
    assert cut_at < SIZE

    assert missing(live_server, key, digest)  # no blob: nothing half-written is visible
    (part,) = list((live_server.home / "uploads").glob(f"*/{digests.hex_of(digest)}.blake3.part"))
    held = part.stat().st_size
    assert 0 < held < SIZE

    before = wire_received(live_server)
    again = account_cli("run", "size.py", "big.zip", timeout=300)
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"{SIZE}\n"
    resent = wire_received(live_server) - before
    assert resent <= SIZE - held + 1024 * 1024  # only the rest went over the wire
    assert not missing(live_server, key, digest)
    assert not part.exists()  # the staged bytes became the blob
    assert status_of(account_cli, run_id(again))["state"] == "succeeded"
