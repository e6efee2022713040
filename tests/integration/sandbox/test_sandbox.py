"""Both sandboxes running the real base interpreter: output, exit status, limits and isolation.

bwrap must be installed here: its cases fail (not skip) without it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rgrid import errors
from rgrid.sandbox import (
    Sandbox,
    SandboxResult,
    SandboxSpec,
    TerminalSpec,
    cgroups,
    detect,
    launch,
    network,
)
from rgrid.sandbox.bwrap import BwrapSandbox, NetworkMode
from rgrid.sandbox.lines import block_lines
from rgrid.sandbox.process import ProcessSandbox

PYTHON = sys._base_executable  # type: ignore[attr-defined]
PREFIX = Path(sys.base_prefix)
SANDBOXES = [pytest.param(BwrapSandbox(), id="bwrap"), pytest.param(ProcessSandbox(), id="process")]
SCRIPT_ENV = {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", "RGRID_VISIBLE": "yes"}


@dataclass
class Run:
    result: SandboxResult
    output: list[tuple[str, bytes]] = field(default_factory=list)
    elapsed_s: float = 0.0

    def stream(self, name: str) -> list[bytes]:
        return [data for stream, data in self.output if stream == name]

    def text(self, name: str) -> str:
        return b"".join(self.stream(name)).decode(errors="replace")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


async def run(
    sandbox: Sandbox,
    workdir: Path,
    code: str,
    cancel: asyncio.Event | None = None,
    cancel_on: bytes | None = None,
    **limits: object,
) -> Run:
    """Run ``code`` as process.py in ``workdir``; set ``cancel`` once ``cancel_on`` is printed."""
    (workdir / "process.py").write_text(textwrap.dedent(code))
    spec = SandboxSpec(
        argv=[PYTHON, "process.py"],
        workdir=workdir,
        env=dict(SCRIPT_ENV),
        ro_binds=((PREFIX, PREFIX),),
        **limits,  # type: ignore[arg-type]
    )
    output: list[tuple[str, bytes]] = []

    async def on_output(stream: str, blocks: list[bytes]) -> None:
        for data in (line for block in blocks for line in block_lines(block)):
            output.append((stream, data))
            if cancel is not None and cancel_on is not None and cancel_on in data:
                cancel.set()

    started = time.monotonic()
    result = await sandbox.run(spec, on_output, cancel)
    return Run(result, output, time.monotonic() - started)


def processes_with(marker: str) -> list[int]:
    """Live processes whose command line contains ``marker`` (zombies have none)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:  # it ended while we looked
            continue
    return pids


def wait_until_gone(marker: str, within_s: float = 2.0) -> list[int]:
    deadline = time.monotonic() + within_s
    while (pids := processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return pids


@pytest.fixture
def marker() -> Iterator[str]:
    """A unique string for a spawned process's command line; anything left is killed after."""
    value = f"rgrid-test-{uuid.uuid4().hex}"
    yield value
    for pid in processes_with(value):
        os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("sandbox", SANDBOXES)
async def test_output_lines_arrive_in_order(sandbox: Sandbox, workdir: Path) -> None:
    done = await run(
        sandbox,
        workdir,
        """
        import sys
        print("hello")
        print("oops", file=sys.stderr)
        print("world")
        sys.stdout.write("no newline")
        """,
    )
    assert done.stream("stdout") == [b"hello\n", b"world\n", b"no newline"]
    assert done.stream("stderr") == [b"oops\n"]
    assert (done.result.returncode, done.result.signal, done.result.exit_code) == (0, None, 0)
    assert not done.result.timed_out and not done.result.cancelled
    assert done.result.duration_s > 0
    assert done.result.max_rss_bytes is not None and done.result.max_rss_bytes > 1024**2


@pytest.mark.parametrize("sandbox", SANDBOXES)
async def test_exit_status(sandbox: Sandbox, workdir: Path) -> None:
    done = await run(sandbox, workdir, "raise SystemExit(3)")
    assert (done.result.returncode, done.result.signal, done.result.exit_code) == (3, None, 3)


@pytest.mark.parametrize("sandbox", SANDBOXES)
async def test_stdin_is_the_given_file_or_else_end_of_file(
    sandbox: Sandbox, workdir: Path, tmp_path: Path
) -> None:
    """The file is opened outside: the script reads it though it is not in its view."""
    data = bytes(range(256)) * 1000 + b"\nlast line without newline"
    given = tmp_path / "work.stdin"  # beside the work directory, as the runner keeps it
    given.write_bytes(data)
    given.chmod(0o400)
    code = """
        import hashlib, os, sys
        data = sys.stdin.buffer.read()
        print(len(data), hashlib.sha256(data).hexdigest(), sorted(os.listdir(".")))
        print(os.path.exists(GIVEN), sys.stdin.isatty())
    """.replace("GIVEN", repr(str(given)))
    fed = await run(sandbox, workdir, code, stdin_path=given)
    assert fed.result.returncode == 0, fed.text("stderr")
    seen = isinstance(sandbox, ProcessSandbox)  # the weaker sandbox sees the host's files
    assert fed.text("stdout") == (
        f"{len(data)} {hashlib.sha256(data).hexdigest()} ['process.py']\n{seen} False\n"
    )
    empty = await run(sandbox, workdir, code)
    assert empty.text("stdout").startswith(f"0 {hashlib.sha256(b'').hexdigest()} ")


@pytest.mark.parametrize("sandbox", SANDBOXES)
async def test_killed_by_signal(sandbox: Sandbox, workdir: Path) -> None:
    done = await run(sandbox, workdir, "import os; os.kill(os.getpid(), 9)")
    assert (done.result.returncode, done.result.signal, done.result.exit_code) == (None, 9, 137)


@pytest.mark.parametrize("sandbox", SANDBOXES)
async def test_timeout_kills_the_whole_group(sandbox: Sandbox, workdir: Path, marker: str) -> None:
    # both ignore SIGTERM: only the SIGKILL after the grace period (or of the group) stops them
    done = await run(
        sandbox,
        workdir,
        f"""
        import signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited by the grandchild
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", "{marker}"])
        time.sleep(0.2)
        print("started")
        time.sleep(60)
        """,
        timeout_s=1.0,
    )
    assert done.stream("stdout") == [b"started\n"]
    assert done.result.timed_out and not done.result.cancelled
    assert done.result.exit_code == 124
    assert done.elapsed_s < 3.5
    assert wait_until_gone(marker) == []


@pytest.mark.parametrize("sandbox", SANDBOXES)
async def test_cancel_kills_the_process(sandbox: Sandbox, workdir: Path) -> None:
    done = await run(
        sandbox,
        workdir,
        "import time; print('ready'); time.sleep(60)",
        cancel=asyncio.Event(),
        cancel_on=b"ready",
    )
    assert done.result.cancelled and not done.result.timed_out
    assert done.result.exit_code != 0
    assert done.elapsed_s < 3


@pytest.mark.parametrize("sandbox", SANDBOXES)
async def test_memory_limit_gives_memory_error(sandbox: Sandbox, workdir: Path) -> None:
    done = await run(sandbox, workdir, "x = bytearray(3 * 1024**3)", memory_bytes=512 * 1024**2)
    assert done.result.exit_code != 0
    assert "MemoryError" in done.text("stderr")


@pytest.mark.parametrize("sandbox", SANDBOXES)
async def test_long_line_arrives_in_64_kib_pieces(sandbox: Sandbox, workdir: Path) -> None:
    done = await run(sandbox, workdir, "import sys; sys.stdout.write('x' * 200 * 1024 + '\\n')")
    pieces = done.stream("stdout")
    assert [len(piece) for piece in pieces] == [65536, 65536, 65536, 8193]
    assert b"".join(pieces) == b"x" * 200 * 1024 + b"\n"


@pytest.mark.parametrize("sandbox", SANDBOXES)
async def test_files_written_in_workdir_stay_on_host(sandbox: Sandbox, workdir: Path) -> None:
    code = "import os; os.makedirs('out'); open('out/r.txt', 'w').write('42'); print(os.getcwd())"
    done = await run(sandbox, workdir, code)
    assert done.result.exit_code == 0, done.text("stderr")
    assert (workdir / "out" / "r.txt").read_text() == "42"
    assert done.stream("stdout") == [f"{workdir}\n".encode()]


@pytest.mark.parametrize("sandbox", SANDBOXES)
async def test_only_spec_env_is_visible(
    sandbox: Sandbox, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RGRID_TEST_GRID_SECRET", "leaked")
    done = await run(sandbox, workdir, "import json, os; print(json.dumps(dict(os.environ)))")
    environ = json.loads(done.text("stdout"))
    assert environ["RGRID_VISIBLE"] == "yes"
    assert "RGRID_TEST_GRID_SECRET" not in environ
    assert set(environ) - set(SCRIPT_ENV) <= {"PWD", "LC_CTYPE"}  # set by bwrap / Python


@pytest.mark.parametrize("sandbox", SANDBOXES)
async def test_callback_error_kills_the_script(sandbox: Sandbox, workdir: Path) -> None:
    async def on_output(stream: str, lines: list[bytes]) -> None:
        raise RuntimeError("callback broke")

    (workdir / "process.py").write_text("import time; print('x'); time.sleep(60)")
    spec = SandboxSpec([PYTHON, "process.py"], workdir, dict(SCRIPT_ENV), ((PREFIX, PREFIX),))
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="callback broke"):
        await sandbox.run(spec, on_output)
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("sandbox", SANDBOXES)
async def test_script_dies_with_the_grid(sandbox: Sandbox, workdir: Path, marker: str) -> None:
    (workdir / "process.py").write_text(f"import time; print('{marker}'); time.sleep(300)")
    module, name = type(sandbox).__module__, type(sandbox).__name__
    grid = f"""
import asyncio, sys
from pathlib import Path
from rgrid.sandbox import SandboxSpec
from {module} import {name}
prefix = Path(sys.argv[2])
argv = [sys.argv[1], "process.py", sys.argv[3]]
spec = SandboxSpec(argv, Path.cwd(), {SCRIPT_ENV!r}, ((prefix, prefix),))
async def on_output(stream, lines):
    sys.stdout.buffer.write(b"".join(lines))
    sys.stdout.flush()
asyncio.run({name}().run(spec, on_output))
"""
    process = subprocess.Popen(
        [sys.executable, "-c", grid, PYTHON, str(PREFIX), marker],
        cwd=workdir,
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == marker.encode()
    assert len(processes_with(marker)) >= 2  # the grid and the script
    process.kill()  # SIGKILL: no cleanup code runs in the grid
    process.wait()
    process.stdout.close()
    assert wait_until_gone(marker) == []


async def test_bwrap_hides_the_host(workdir: Path, tmp_path: Path) -> None:
    sibling = tmp_path / "other"
    sibling.mkdir()
    (sibling / "secret.txt").write_text("secret")
    with tempfile.NamedTemporaryFile(dir="/tmp", prefix="rgrid-host-") as host_tmp:
        done = await run(
            BwrapSandbox(),
            workdir,
            f"""
            import json, os
            def listing(path):
                return sorted(os.listdir(path)) if os.path.isdir(path) else None
            print(json.dumps({{
                "sibling": os.path.exists({str(sibling / "secret.txt")!r}),
                "host_tmp": os.path.exists({host_tmp.name!r}),
                "tmp": listing("/tmp"),
                "dirs": {{d: listing(d) for d in
                         ["/root", "/home", "/var", "/srv", "/work", "/run", "/opt", "/mnt"]}},
            }}))
            """,
        )
    seen = json.loads(done.text("stdout"))
    assert seen["sibling"] is False and seen["host_tmp"] is False
    bound = [PREFIX, workdir, Path(os.path.realpath("/etc/resolv.conf"))]
    for directory, names in seen["dirs"].items():
        # only the directories leading to a mount (the interpreter, the workdir) exist
        allowed = {p.relative_to(directory).parts[0] for p in bound if p.is_relative_to(directory)}
        assert set(names or []) <= allowed, directory
    assert set(seen["tmp"]) <= {workdir.relative_to("/tmp").parts[0]}


async def test_bwrap_system_is_read_only_and_tmp_private(workdir: Path) -> None:
    done = await run(
        BwrapSandbox(),
        workdir,
        f"""
        import os
        targets = ["/usr/rgrid-test", "/etc/rgrid-test", "/rgrid-test", {str(PREFIX / "x")!r}]
        for path in targets:
            try:
                open(path, "w").close()
                print("wrote", path)
            except OSError as exc:
                print("denied", exc.errno)
        open("/tmp/rgrid-inside", "w").write("private")
        print(open("/tmp/rgrid-inside").read())
        try:
            print("read", len(open("/etc/shadow").read()))
        except OSError as exc:
            print("denied", exc.errno)
        """,
    )
    stdout = done.stream("stdout")
    assert stdout[:4] == [b"denied 30\n"] * 4, done.text("stderr")  # EROFS
    assert stdout[4] == b"private\n"
    assert not Path("/tmp/rgrid-inside").exists()
    if Path("/etc/shadow").exists():
        assert stdout[5].startswith(b"denied"), stdout[5]  # the grid's password hashes


CONNECT = """
import socket, sys
for host, port in {targets!r}:
    try:
        socket.create_connection((host, port), timeout=3).close()
        print(host, "connected")
    except OSError as exc:
        print(host, "failed", type(exc).__name__)
"""


def host_address() -> str:
    """This host's own non-loopback IPv4 address (what a 0.0.0.0 listener also answers on)."""
    found = network.host_addresses()
    assert found, "this host has no non-loopback IPv4 address"
    return found[0].split("/")[0]


@pytest.mark.parametrize(
    ("mode", "network_on", "reaches_host"),
    [
        (NetworkMode.ISOLATED, True, False),
        (NetworkMode.HOST, True, True),
        (NetworkMode.ISOLATED, False, False),
    ],
    ids=["isolated", "host", "off"],
)
async def test_bwrap_network_modes_and_the_hosts_services(
    workdir: Path, mode: NetworkMode, network_on: bool, reaches_host: bool
) -> None:
    """Network on (isolated, the default) reaches neither the host's loopback nor its own
    address, where a service listening on every interface (the grid, a database) answers."""
    with socket.create_server(("0.0.0.0", 0)) as listener:
        port = listener.getsockname()[1]
        targets = [("127.0.0.1", port), (host_address(), port)]
        code = CONNECT.format(targets=targets)
        done = await run(BwrapSandbox(network_mode=mode), workdir, code, network=network_on)
    lines = done.text("stdout").splitlines()
    assert len(lines) == 2, done.output
    for line in lines:
        assert (" connected" in line) is reaches_host, lines


async def test_isolated_network_blocks_private_ranges_and_keeps_dns(workdir: Path) -> None:
    """The private ranges, and the host's loopback at slirp's gateway: a service listening on
    127.0.0.1 here (a port of the test's, not 80, which the machine's network may answer for
    any address) is not reached."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        code = f"""
        import socket
        for host, port in (("10.1.2.3", 80), ("172.16.0.1", 80), ("192.168.1.1", 80),
                           ("169.254.169.254", 80), ("{network.SLIRP_GATEWAY}", {port})):
            try:
                socket.create_connection((host, port), timeout=3).close()
                print(host, "connected")
            except OSError as exc:
                print(host, "failed", exc.errno)
        print(open("/etc/resolv.conf").read().strip())
        """
        done = await run(BwrapSandbox(network_mode=NetworkMode.ISOLATED), workdir, code)
    lines = done.text("stdout").splitlines()
    assert all(" failed " in line for line in lines[:5]), lines
    assert lines[5] == f"nameserver {network.SLIRP_DNS}"


async def test_isolated_script_is_in_a_namespace_of_its_own_and_the_grid_stays_out(
    workdir: Path,
) -> None:
    """The script starts in the pooled namespace (entered by a thread of its own, not by the
    event loop's): its network namespace is not the grid's, and the grid's threads keep theirs."""
    grid_before = os.readlink("/proc/thread-self/ns/net")
    code = """
    import os
    print(os.readlink("/proc/self/ns/net"))
    """
    box = BwrapSandbox(network_mode=NetworkMode.ISOLATED)
    first = await run(box, workdir, code)
    second = await run(box, workdir, code)
    script_ns = first.text("stdout").strip()
    assert script_ns.startswith("net:["), first.output
    assert script_ns != grid_before
    assert second.text("stdout").strip() == script_ns  # reused, one at a time
    assert os.readlink("/proc/thread-self/ns/net") == grid_before
    assert os.readlink("/proc/self/ns/net") == grid_before


async def test_bwrap_leaves_no_cgroup_behind(
    workdir: Path, marker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each execution's group is deleted once it is over, even when the script left a process
    running in the background (killed with the group, deleted after); the grid's own thread
    that started the sandbox from inside the group has left it."""
    made: list[cgroups.ExecutionGroup] = []
    take = launch.take

    async def recording() -> launch.Launcher:
        launcher = await take()
        assert launcher.group is not None, "these machines have cgroup v1: threads can join"
        made.append(launcher.group)
        return launcher

    monkeypatch.setattr(launch, "take", recording)
    code = f"""
    import subprocess
    subprocess.Popen(["sleep", "30", "{marker}"], start_new_session=True)
    print("left one behind")
    """
    for _ in range(3):
        done = await run(BwrapSandbox(), workdir, code, network=False)
        assert done.text("stdout") == "left one behind\n", done.output
    assert len(made) == 3
    assert cgroups.wait_removed(timeout_s=10)
    assert [path for group in made for path in group.directories if path.exists()] == []
    assert wait_until_gone(marker) == []


QUIET = "print('no network here')"
UDP_DATAGRAM = """
import socket
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"?", ("10.0.2.3", 53))  # a DNS query's way
"""
SUBPROCESS_CONNECT = f"""
import subprocess
connect = "import socket\\ntry: socket.create_connection(('10.0.2.2', 9), timeout=2)\\nexcept OSError: pass"
subprocess.run([{PYTHON!r}, "-c", connect], check=True)
"""
OWN_LOOPBACK = """
import socket
with socket.create_server(("127.0.0.1", 0)) as server:
    socket.create_connection(server.getsockname()).close()
"""


@pytest.mark.parametrize(
    ("code", "used"),
    [(QUIET, False), (UDP_DATAGRAM, True), (SUBPROCESS_CONNECT, True), (OWN_LOOPBACK, True)],
    ids=["quiet", "udp-datagram", "subprocess-connect", "own-loopback"],
)
async def test_network_use_is_observed_in_the_scripts_namespace(
    workdir: Path, code: str, used: bool
) -> None:
    """Counted by the kernel in the script's namespace: a datagram (a DNS query), a connection attempt by a
    subprocess, even one to itself; a script that opens nothing leaves the counters still
    (the namespace is reused: what the run before did does not count)."""
    box = BwrapSandbox(network_mode=NetworkMode.ISOLATED)
    done = await run(box, workdir, code)
    assert done.result.returncode == 0, done.output
    assert done.result.network_used is used
    again = await run(box, workdir, QUIET)  # the same pooled namespace, a quiet script
    assert again.result.network_used is False


@pytest.mark.parametrize(
    ("sandbox", "mode", "network_on", "expected"),
    [
        (BwrapSandbox(network_mode=NetworkMode.ISOLATED), "isolated", False, False),
        (BwrapSandbox(network_mode=NetworkMode.HOST), "host", True, None),
        (ProcessSandbox(), "process", True, None),
    ],
    ids=["network-off", "host-network", "process-sandbox"],
)
async def test_network_use_off_or_not_observable(
    workdir: Path, sandbox: Sandbox, mode: str, network_on: bool, expected: bool | None
) -> None:
    """Network off: nothing can have been used. The host's network or no namespaces: the grid
    cannot tell (None), and the result cache treats such a run as one that may have."""
    done = await run(sandbox, workdir, UDP_DATAGRAM, network=network_on)
    assert done.result.network_used is expected, mode


@pytest.mark.parametrize("sandbox", SANDBOXES)
@pytest.mark.parametrize(
    ("terminal", "expected"),
    [
        (TerminalSpec(120, 40), "True True os.terminal_size(columns=120, lines=40)"),
        (
            TerminalSpec(80, 24, stdout=True, stderr=False),
            "True False os.terminal_size(columns=80, lines=24)",
        ),
        (None, "False False -"),
    ],
    ids=["both", "stdout-only", "pipes"],
)
async def test_streams_are_terminals_of_the_users_size_when_asked(
    workdir: Path, sandbox: Sandbox, terminal: TerminalSpec | None, expected: str
) -> None:
    """A terminal per stream keeps stdout and stderr apart; output processing is off, so the
    bytes are the script's (no \\r added before \\n)."""
    code = """
    import os, sys
    size = os.get_terminal_size(1) if os.isatty(1) else "-"
    print(os.isatty(1), os.isatty(2), size)
    print("to stderr", file=sys.stderr)
    """
    done = await run(sandbox, workdir, code, terminal=terminal)
    assert done.result.returncode == 0, done.output
    assert done.stream("stdout") == [expected.encode() + b"\n"]
    assert done.stream("stderr") == [b"to stderr\n"]


async def test_a_one_cpu_execution_sees_one_cpu(workdir: Path) -> None:
    code = """
    import os
    print(os.cpu_count(), len(os.sched_getaffinity(0)))
    """
    done = await run(BwrapSandbox(), workdir, code, cpus=1.0)
    assert done.text("stdout") == "1 1\n", done.output
    unbounded = await run(BwrapSandbox(), workdir, code)
    assert unbounded.text("stdout") == f"{os.cpu_count()} {len(os.sched_getaffinity(0))}\n"


async def test_isolated_network_reaches_the_package_index(workdir: Path) -> None:
    """The internet works: a package's index page over HTTPS, name resolved inside."""
    code = """
    import urllib.request
    with urllib.request.urlopen("https://pypi.org/simple/six/", timeout=30) as page:
        print(page.status, b"six-" in page.read())
    """
    done = await run(BwrapSandbox(network_mode=NetworkMode.ISOLATED), workdir, code)
    assert done.text("stdout").strip() == "200 True", done.output


async def test_bwrap_setup_failure_is_a_sandbox_error(workdir: Path) -> None:
    missing = workdir / "does-not-exist"
    spec = SandboxSpec([PYTHON, "-c", "pass"], workdir, {}, ((missing, Path("/opt/x")),))

    async def on_output(stream: str, lines: list[bytes]) -> None:
        pass

    with pytest.raises(errors.SandboxError):
        await BwrapSandbox().run(spec, on_output)


async def test_missing_program_is_a_sandbox_error(workdir: Path) -> None:
    async def on_output(stream: str, lines: list[bytes]) -> None:
        pass

    spec = SandboxSpec([str(workdir / "no-python")], workdir, {})
    with pytest.raises(errors.SandboxError):
        await ProcessSandbox().run(spec, on_output)


async def test_missing_program_in_bwrap_exits_127_naming_it(workdir: Path) -> None:
    """Inside bwrap the program is started by setpriv (as the unprivileged user), which, like a
    shell, exits 127 and names what it could not run."""
    stderr: list[bytes] = []

    async def on_output(stream: str, blocks: list[bytes]) -> None:
        stderr.extend(blocks if stream == "stderr" else [])

    spec = SandboxSpec([str(workdir / "no-python")], workdir, {})
    result = await BwrapSandbox().run(spec, on_output)
    assert result.exit_code == 127
    assert b"no-python" in b"".join(stderr)


def test_detect_prefers_bwrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RGRID_SANDBOX", raising=False)
    assert isinstance(detect(), BwrapSandbox)
    monkeypatch.setenv("RGRID_SANDBOX", "bwrap")
    assert detect().name == "bwrap"
    monkeypatch.setenv("RGRID_SANDBOX", "process")
    assert isinstance(detect(), ProcessSandbox)
    assert "weaker" in detect().strength
    monkeypatch.setenv("RGRID_SANDBOX", "docker")
    with pytest.raises(errors.SandboxError):
        detect()


@pytest.mark.parametrize("sandbox", SANDBOXES)
async def test_cancelled_run_task_leaves_nothing_running(
    sandbox: Sandbox, workdir: Path, marker: str
) -> None:
    (workdir / "process.py").write_text("import time; print('ready'); time.sleep(300)")
    spec = SandboxSpec(
        [PYTHON, "process.py", marker], workdir, dict(SCRIPT_ENV), ((PREFIX, PREFIX),)
    )
    ready = asyncio.Event()

    async def on_output(stream: str, data: bytes) -> None:
        ready.set()

    task = asyncio.create_task(sandbox.run(spec, on_output))
    await asyncio.wait_for(ready.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert wait_until_gone(marker) == []


async def test_process_sandbox_stops_reading_a_pipe_held_by_an_escaped_grandchild(
    workdir: Path, marker: str
) -> None:
    # setsid() takes the grandchild out of the group; only the drain grace period ends the run
    done = await run(
        ProcessSandbox(),
        workdir,
        f"""
        import os, subprocess, sys
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", "{marker}"],
                         start_new_session=True)
        print("bye")
        """,
    )
    assert done.stream("stdout") == [b"bye\n"]
    assert done.result.exit_code == 0
    assert done.elapsed_s < 3
