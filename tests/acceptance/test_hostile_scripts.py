"""Acceptance: a hostile script cannot reach the host or exhaust the grid (issue 13, items 2-6).

Each script runs through the real CLI on a real grid (bubblewrap, cgroups, user-mode network).
While a limit case runs, another account keeps using the grid; its requests must all be answered.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from tests.acceptance.conftest import new_account, run_id, status_of
from tests.conftest import Cli, LiveServer, make_server, require_tool

from rgrid.sandbox import network

CONNECT = """\
import socket, sys
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
        print(target, "connected")
    except OSError as exc:
        print(target, "refused", type(exc).__name__)
"""

DOWNLOAD = """\
import hashlib, re, urllib.parse, urllib.request
index = "https://pypi.org/simple/six/"
page = urllib.request.urlopen(index, timeout=60).read().decode()
href = next(h for h in re.findall(r'href="([^"]+)"', page) if ".whl#sha256=" in h)
url, _, digest = urllib.parse.urljoin(index, href).partition("#sha256=")
wheel = urllib.request.urlopen(url, timeout=60).read()
print("downloaded", url.rsplit("/", 1)[-1], hashlib.sha256(wheel).hexdigest() == digest)
"""


@pytest.fixture(autouse=True)
def _tools() -> None:
    for tool in ("bwrap", "slirp4netns", "setpriv"):
        require_tool(tool)


@pytest.fixture
def loopback_listener() -> Iterator[tuple[int, list[str]]]:
    """A TCP listener on every interface of the host; yields (port, peers that connected)."""
    peers: list[str] = []
    server = socket.create_server(("0.0.0.0", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, addr = server.accept()
            except TimeoutError:
                continue
            peers.append(addr[0])
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], peers
    stop.set()
    thread.join()
    server.close()


def _host_address() -> str:
    found = network.host_addresses()
    assert found, "this host has no non-loopback IPv4 address to test with"
    return found[0].split("/")[0]


def test_network_on_reaches_the_internet_but_not_the_host(
    cli: Cli, live_server: LiveServer, workdir: Path, loopback_listener: tuple[int, list[str]]
) -> None:
    port, peers = loopback_listener
    (workdir / "connect.py").write_text(CONNECT)
    targets = [
        f"127.0.0.1:{live_server.port}",  # the grid's own API
        "127.0.0.1:5432",  # PostgreSQL, superuser without a password
        "127.0.0.1:6379",  # Redis
        f"127.0.0.1:{port}",
        f"{_host_address()}:{port}",  # the same listener through the host's own address
        "10.0.2.2:5432",  # slirp's alias for the host's loopback, switched off
        "169.254.169.254:80",  # a cloud's metadata service
    ]

    result = cli("run", "connect.py", *targets)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == targets
    assert all(line.split()[1] == "refused" for line in lines), lines
    assert peers == []

    (workdir / "download.py").write_text(DOWNLOAD)
    fetched = cli("run", "download.py", timeout=180)
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.startswith("downloaded six-") and fetched.stdout.endswith(" True\n")


def test_an_operator_may_give_scripts_the_hosts_network(
    tmp_path: Path, workdir: Path, loopback_listener: tuple[int, list[str]]
) -> None:
    port, peers = loopback_listener
    server = make_server(tmp_path, RGRID_SANDBOX_NETWORK="host")
    server.start()
    try:
        cli = Cli(cwd=workdir, env=server.cli_env())
        (workdir / "connect.py").write_text(CONNECT)
        result = cli("run", "connect.py", f"127.0.0.1:{port}")
        assert result.stdout == f"127.0.0.1:{port} connected\n", result.stderr
        assert peers == ["127.0.0.1"]
        blocked = cli("run", "--no-network", "connect.py", f"127.0.0.1:{port}")
        assert "refused" in blocked.stdout
        assert peers == ["127.0.0.1"]
    finally:
        server.stop()


def test_scripts_run_unprivileged_with_secrets_masked(cli: Cli, workdir: Path) -> None:
    (workdir / "who.py").write_text(
        "import os\n"
        "print('uid', os.getuid(), os.geteuid(), os.getgid())\n"
        "for path in ('/etc/shadow', '/etc/shadow-', '/etc/gshadow', '/etc/gshadow-'):\n"
        "    try:\n"
        "        print(path, len(open(path, 'rb').read()))\n"
        "    except OSError as exc:\n"
        "        print(path, type(exc).__name__)\n"
        "open('mine.txt', 'w').write('written by the script\\n')\n"
        "print('caps', open('/proc/self/status').read().split('CapEff:')[1].split()[0])\n"
    )

    result = cli("run", "who.py")

    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert lines["uid"] != "0 0 0" and not lines["uid"].startswith("0 ")
    for path in ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-"):
        if Path(path).exists():  # masked: empty, or unreadable to the unprivileged user
            assert lines[path] in ("0", "PermissionError"), (path, lines[path])
    assert lines["caps"] == "0000000000000000"
    assert (workdir / "mine.txt").read_text() == "written by the script\n"


class OtherTenant:
    """Another account using the grid while a hostile script runs: lists its executions every
    100 ms; every answer must come, and in time."""

    def __init__(self, server: LiveServer, key: str) -> None:
        self._client = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=10
        )
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                status = self._client.get("/api/v1/executions", params={"limit": 20}).status_code
                if status != 200:
                    self.failures.append(f"HTTP {status}")
            except httpx.HTTPError as exc:
                self.failures.append(repr(exc))
            self.latencies.append(time.monotonic() - started)
            self._stop.wait(0.1)

    def __enter__(self) -> OtherTenant:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._client.close()


@pytest.fixture
def other_tenant(live_server: LiveServer, cli: Cli) -> Callable[[], OtherTenant]:
    _, key = new_account(cli)
    return lambda: OtherTenant(live_server, key)


HOSTILE = {
    "fork_bomb": (
        "import os, time\n"
        "children = 0\n"
        "for _ in range(2000):\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(30)\n"
        "        os._exit(0)\n"
        "    children += 1\n"
        "print('started', children)\n",
        [],
        "process_limit",
    ),
    "children_over_memory": (
        "import os, time\n"
        "pids = []\n"
        "for _ in range(6):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        block = bytearray(200 * 1024**2)\n"
        "        for i in range(0, len(block), 4096):\n"
        "            block[i] = 1\n"
        "        time.sleep(2)\n"
        "        os._exit(0)\n"
        "    pids.append(pid)\n"
        "codes = [os.waitpid(pid, 0)[1] for pid in pids]\n"
        "raise SystemExit(0 if not any(codes) else 3)\n",
        ["--memory", "256MiB"],
        "out_of_memory",
    ),
    "tmp_over_memory": (
        "with open('/tmp/fill', 'wb') as f:\n"
        "    for _ in range(1024):\n"
        "        f.write(b'x' * 1024**2)\n"
        "print('wrote 1 GiB into /tmp')\n",
        ["--memory", "64MiB"],
        "out_of_memory",
    ),
    "disk_filler": (
        "for n in range(50):\n"
        "    with open(f'fill-{n}.bin', 'wb') as f:\n"
        "        for _ in range(100):\n"
        "            f.write(b'x' * 1024**2)\n"
        "print('wrote 5 GiB')\n",
        ["--disk", "1GiB"],
        "disk_limit",
    ),
    "one_huge_file": (
        "with open('huge.bin', 'wb') as f:\n"
        "    for _ in range(5 * 1024):\n"
        "        f.write(b'x' * 1024**2)\n",
        ["--disk", "1GiB"],
        "disk_limit",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_limit_stops_the_script_with_its_own_class_while_others_are_served(
    case: str, cli: Cli, workdir: Path, other_tenant: Callable[[], OtherTenant]
) -> None:
    code, options, failure_class = HOSTILE[case]
    (workdir / "hostile.py").write_text(code)
    (workdir / "ok.py").write_text("open('ok.txt', 'w').write('fine\\n')\n")

    with other_tenant() as tenant:
        started = time.monotonic()
        result = cli("run", *options, "--max-retries", "0", "hostile.py", timeout=120)
        elapsed = time.monotonic() - started
        neighbour = cli("run", "ok.py")

    assert result.returncode != 0, result.stdout
    status = status_of(cli, run_id(result))
    assert status["state"] == "failed"
    assert status["failure_class"] == failure_class, status
    assert status["attempt"] == 1  # the first attempt: not retried as the grid's fault
    assert elapsed < 60, f"{case} took {elapsed:.1f}s to stop"
    if failure_class == "disk_limit":  # what filled the disk is not kept (nor downloaded)
        assert not list(workdir.glob("fill-*.bin")) and not (workdir / "huge.bin").exists()
    assert neighbour.returncode == 0, neighbour.stderr
    assert (workdir / "ok.txt").read_text() == "fine\n"
    assert tenant.failures == []
    assert tenant.latencies, "the other tenant made no request"
    print(
        f"{case}: stopped in {elapsed:.1f}s; other tenant {len(tenant.latencies)} requests, "
        f"max {max(tenant.latencies) * 1000:.0f} ms"
    )
