"""Acceptance: the sandbox around the script (issue 2, items 3 and 5; SPEC §14)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.acceptance.conftest import run_id, status_of, wait_for
from tests.conftest import Cli, LiveServer, require_tool

#: Paths are passed as ``path:/abs/path`` so the CLI does not take them for local files to upload.
PROBE = """\
import os, sys
for arg in sys.argv[1:]:
    path = arg.removeprefix("path:")
    try:
        if os.path.isdir(path):
            print(path, "LISTED", sorted(os.listdir(path)))
        else:
            with open(path, "rb") as f:
                print(path, "READ", len(f.read()))
    except OSError as exc:
        print(path, type(exc).__name__)
"""

CONNECT = """\
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3).close()
except OSError as exc:
    print("failed:", type(exc).__name__)
    sys.exit(4)
print("connected")
"""


@pytest.fixture(autouse=True)
def _bubblewrap() -> None:
    require_tool("bwrap")


@pytest.fixture
def listener() -> Iterator[tuple[int, list[str]]]:
    """A TCP listener on a loopback port; yields (port, peers that connected)."""
    peers: list[str] = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, addr = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            peers.append(f"{addr[0]}:{addr[1]}")
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], peers
    finally:
        stop.set()
        thread.join(2)
        server.close()


def _probe_lines(stdout: str) -> dict[str, str]:
    out = {}
    for line in stdout.splitlines():
        path, _, rest = line.partition(" ")
        out[path] = rest
    return out


def test_script_cannot_read_the_grids_home(
    cli: Cli, workdir: Path, live_server: LiveServer
) -> None:
    home = live_server.home
    (workdir / "probe.py").write_text(PROBE)
    assert cli("run", "probe.py").returncode == 0  # the grid now holds at least this blob
    blob_files = [p for p in (home / "blobs").rglob("*") if p.is_file()]
    assert blob_files
    targets = [home / "admin.key", home / "rgrid.db", home / "blobs", *blob_files[:3]]
    assert all(p.exists() for p in targets)  # so "not found" below means "hidden"

    result = cli("run", "probe.py", *[f"path:{p}" for p in [*targets, home / "work"]])

    assert result.returncode == 0, result.stderr
    seen = _probe_lines(result.stdout)
    for path in targets:
        assert seen[str(path)] in ("FileNotFoundError", "PermissionError"), (path, seen[str(path)])
    # of the grid's work area it sees its own work directory at most
    assert seen[str(home / "work")] in (
        "FileNotFoundError",
        "PermissionError",
        f"LISTED {[run_id(result)]}",
    )
    assert live_server.admin_key not in result.stdout + result.stderr


def test_script_cannot_read_another_running_executions_work_directory(
    cli: Cli, workdir: Path, live_server: LiveServer
) -> None:
    (workdir / "holder.py").write_text(
        "import time\n"
        "open('secret.txt', 'w').write('the secret of A\\n')\n"
        "print('written', flush=True)\n"
        "time.sleep(5)\n"
    )
    (workdir / "probe.py").write_text(PROBE)
    submitted = cli("run", "--detach", "holder.py")
    assert submitted.returncode == 0, submitted.stderr
    holder = submitted.stdout.strip()
    try:
        holder_dir = live_server.home / "work" / holder
        secret = holder_dir / "secret.txt"
        wait_for(secret.is_file)  # exists on the host while A runs
        assert status_of(cli, holder)["state"] == "running"

        result = cli("run", "probe.py", f"path:{secret}", f"path:{holder_dir}")

        assert result.returncode == 0, result.stderr
        seen = _probe_lines(result.stdout)
        assert seen[str(secret)] in ("FileNotFoundError", "PermissionError")
        assert seen[str(holder_dir)] in ("FileNotFoundError", "PermissionError")
        assert "the secret of A" not in result.stdout
    finally:
        cli("cancel", holder)


def test_symlinks_the_script_creates_are_not_collected(
    cli: Cli, workdir: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("outside the work directory\n")
    (workdir / "links.py").write_text(
        "import os, sys\n"
        "os.symlink('/etc/passwd', 'passwd')\n"
        "os.symlink('/etc', 'etc_dir')\n"
        "os.makedirs('out', exist_ok=True)\n"
        "os.symlink(sys.argv[1].removeprefix('path:'), 'out/outside.txt')\n"
        "open('out/real.txt', 'w').write('real\\n')\n"
        "print('linked')\n"
    )

    result = cli("run", "links.py", f"path:{outside}")

    assert result.returncode == 0, result.stderr
    assert result.stdout == "linked\n"
    listed = json.loads(cli("outputs", run_id(result), "--json").stdout)
    assert [item["path"] for item in listed] == ["out/real.txt"]
    got = sorted(p.relative_to(workdir).as_posix() for p in workdir.rglob("*"))
    assert got == ["links.py", "out", "out/real.txt"]
    assert not any(p.is_symlink() for p in workdir.rglob("*"))


def test_no_network_blocks_a_loopback_connection(
    cli: Cli, workdir: Path, listener: tuple[int, list[str]]
) -> None:
    port, peers = listener
    (workdir / "connect.py").write_text(CONNECT)

    # network on is the internet, not the host: its loopback is out of reach either way
    # (tests/acceptance/test_hostile_scripts.py: what network on does reach)
    isolated = cli("run", "connect.py", str(port))
    assert isolated.returncode == 4, isolated.stderr
    assert status_of(cli, run_id(isolated))["network"] is True

    blocked = cli("run", "--no-network", "connect.py", str(port))

    assert blocked.returncode == 4, blocked.stderr
    assert blocked.stdout.startswith("failed:")
    assert peers == []
    assert status_of(cli, run_id(blocked))["network"] is False


def test_memory_limit_turns_a_big_allocation_into_out_of_memory(cli: Cli, workdir: Path) -> None:
    (workdir / "hog.py").write_text(
        "print('allocating', flush=True)\n"
        "block = bytearray(3 * 1024**3)\n"
        "print('allocated', len(block))\n"
    )

    result = cli("run", "--memory", "512MiB", "hog.py")

    assert result.returncode != 0
    assert result.stdout == "allocating\n"
    assert "MemoryError" in result.stderr
    status = status_of(cli, run_id(result))
    assert status["state"] == "failed"
    assert status["failure_class"] == "out_of_memory"
    assert status["memory_bytes"] == 512 * 1024**2
    hints = [line for line in result.stderr.splitlines() if "hint:" in line]
    assert any("--memory" in line for line in hints), result.stderr
