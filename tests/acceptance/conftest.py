"""Helpers of the acceptance tier: fresh accounts, execution ids, processes, polling."""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from tests.conftest import RGRID_BIN, Cli, CliResult, LiveServer, blob_name

from rgrid import digests
from rgrid.enums import ExecutionState

T = TypeVar("T")

EXEC_ID = re.compile(r"\bexec_[A-Za-z0-9]+\b")


def new_account(admin: Cli, name: str | None = None) -> tuple[str, str]:
    """Create an account with the admin key: returns (account id, its first API key)."""
    result = admin("accounts", "create", name or f"acct-{uuid.uuid4().hex[:8]}", "--json")
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    return created["account"]["id"], created["key"]


@pytest.fixture
def account_cli(live_server: LiveServer, cli: Cli, workdir: Path) -> Cli:
    """The CLI with the key of a fresh account: its history holds only this test's executions."""
    _, key = new_account(cli)
    return Cli(cwd=workdir, env=live_server.cli_env(key))


def run_id(result: CliResult) -> str:
    """The execution id ``rgrid run`` names in its summary line on stderr."""
    ids = EXEC_ID.findall(result.stderr)
    assert ids, f"no execution id in stderr: {result.stderr!r}"
    return ids[-1]


def json_of(result: CliResult) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def status_of(cli: Cli, execution_id: str) -> dict[str, Any]:
    data = json_of(cli("status", execution_id, "--json"))
    assert isinstance(data, dict)
    return data


def wait_for(check: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.1) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s (last value {value!r})")
        time.sleep(interval)


#: the states in which an execution may still start a build or run on a grid
IN_FLIGHT = {state.value for state in ExecutionState if not state.terminal}


def settled(server: LiveServer, timeout: float = 120.0) -> None:
    """Wait until ``server`` has no execution in flight: a test that compares the whole grid's
    counters before and after must not count what an earlier test on the shared grid left
    running (a build that ends mid-test)."""

    def in_flight() -> int:
        text = server.metrics()
        found = re.findall(r'^rgrid_executions\{state="(\w+)"\} ([0-9.]+)$', text, re.MULTILINE)
        return sum(int(float(n)) for state, n in found if state in IN_FLIGHT)

    wait_for(lambda: in_flight() == 0, timeout=timeout, interval=0.25)


def processes_with(marker: str) -> list[tuple[int, str]]:
    """Live processes (other than this one) whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # the process ended meanwhile
        if state == "Z":
            continue  # a zombie is dead; only its parent has not reaped it yet
        text = cmdline.replace(b"\0", b" ").decode(errors="replace")
        if marker in text:
            found.append((int(entry.name), text))
    return found


def unique_marker(label: str) -> str:
    return f"rgrid-test-{label}-{uuid.uuid4().hex}"


def assert_no_process_with(marker: str, grace: float = 2.0) -> None:
    """No process carrying ``marker`` is left (after ``grace`` seconds for the kernel to reap)."""
    deadline = time.monotonic() + grace
    while (left := processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == [], f"processes left behind: {left}"


def run_on_a_terminal(cli: Cli, *args: str, timeout: float = 120) -> tuple[int, bytes, str]:
    """The installed CLI with its stderr on a pty (a terminal), stdout a pipe: its exit code,
    stdout, and everything it drew on the terminal."""
    import pty
    import subprocess

    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [str(RGRID_BIN), *args],
        cwd=cli.cwd,
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=follower,
    )
    os.close(follower)
    screen = b""
    try:
        while True:  # read as it comes: a full pty would block the CLI
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the CLI ended and everything it wrote was read
                break
            if not chunk:
                break
            screen += chunk
        stdout, _ = process.communicate(timeout=timeout)
    finally:
        os.close(leader)
        process.kill()
    return process.returncode, stdout, screen.decode()


def blob_file(server: LiveServer, data: bytes) -> Path:
    """Where the grid's local storage keeps this content."""
    sha = digests.of_bytes(data)
    [path] = [p for p in (server.home / "blobs").rglob(blob_name(sha)) if p.is_file()]
    return path


def damage_keeping_mtime(path: Path) -> None:
    """Flip bytes in place, as bit rot would: same inode, size and mtime."""
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    with path.open("r+b") as handle:
        handle.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
