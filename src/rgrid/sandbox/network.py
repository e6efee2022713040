"""The internet without the host: user-mode networking for sandboxes that have the network on.

A script with network on gets a network namespace of its own whose only way out is slirp4netns
(user-mode TCP/IP: connections are made again by an ordinary process of the grid). Inside, the
host's loopback is not mapped (``--disable-host-loopback``) and routes of type ``prohibit`` cover
the private, shared, link-local and reserved ranges and every address of the host, so the grid's
API, its database and any other service of the host or its LAN answer "permission denied", while
package indexes and the rest of the internet work. DNS goes through slirp's resolver (10.0.2.3).

Making a namespace costs tens of milliseconds (three programs), so namespaces are kept and
reused, one at a time: an execution takes a free one and gives it back after every process of
its PID namespace is dead, which closes every socket it had. A script has no capability, so it
cannot change routes, links or sysctls of the namespace for the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import functools
import ipaddress
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from rgrid import errors
from rgrid.proc import libc

logger = logging.getLogger(__name__)

NETNS_DIR = Path("/run/netns")
#: an operator's opt-in: sandboxes reach the host's loopback services at slirp's gateway
#: 10.0.2.2 (a grid on a developer's machine, tests); never the host's other addresses
HOST_LOOPBACK_ENV = "RGRID_SANDBOX_HOST_LOOPBACK"
SLIRP_GATEWAY = "10.0.2.2"
NAME_PREFIX = "rgrid-"
SLIRP_DNS = "10.0.2.3"
SLIRP_MTU = 65520
TAP = "tap0"
READY_TIMEOUT_S = 10.0
MNT_DETACH = 2
CLONE_NEWNET = 0x40000000
#: never reachable from a sandbox: "this" network, private (RFC 1918), shared (CGNAT),
#: link-local, benchmark, multicast and reserved ranges; slirp's own 10.0.2.0/24 stays routed
BLOCKED_RANGES = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
)


@dataclasses.dataclass
class Namespace:
    """One prepared network namespace and the slirp4netns process that serves it. A sandbox is
    started in it from a thread that ``join``ed it (a child starts in its parent thread's)."""

    name: str
    slirp: subprocess.Popen[bytes]
    exit_write: int  # slirp4netns exits when this closes (also when the grid dies)

    @property
    def path(self) -> Path:
        return NETNS_DIR / self.name

    def alive(self) -> bool:
        return self.slirp.poll() is None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.exit_write)
        try:
            self.slirp.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.slirp.kill()
            self.slirp.wait()
        _delete_netns(self.path)


def _delete_netns(path: Path) -> None:
    """What ``ip netns delete`` does: detach the namespace's bind mount, remove its file."""
    libc().umount2(str(path).encode(), MNT_DETACH)
    with contextlib.suppress(OSError):
        path.unlink()


def join(path: Path) -> None:
    """Move the calling thread into the network namespace at ``path`` (setns(2)): what it
    starts afterwards is in that namespace from its first instruction."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc().setns(fd, CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns into {path}: {os.strerror(error)}")
    finally:
        os.close(fd)


#: the counters of /proc/net/snmp (protocol, field) and /proc/net/snmp6 that move only when a
#: process of the namespace opens a TCP connection, accepts one, sends a UDP datagram (a DNS
#: lookup is one) or a ping. The kernel's own IPv6 router and neighbour messages are ICMPv6
#: of other types: a namespace nobody uses keeps these still.
SNMP_COUNTERS = frozenset(
    {
        ("Tcp", "ActiveOpens"),
        ("Tcp", "PassiveOpens"),
        ("Udp", "OutDatagrams"),
        ("UdpLite", "OutDatagrams"),
        ("Icmp", "OutEchos"),
    }
)
SNMP6_COUNTERS = frozenset({"Udp6OutDatagrams", "UdpLite6OutDatagrams", "Icmp6OutEchos"})


def traffic() -> int:
    """The sum of those counters in the calling thread's network namespace: compared before and
    after a script ran in a namespace of its own, it tells whether the script, a subprocess or
    C code in it used the network (a connection to the namespace's own loopback counts too)."""
    here = Path("/proc/thread-self/net")
    total = 0
    lines = (here / "snmp").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=True):
        protocol, _, fields = names.partition(": ")
        numbers = values.partition(": ")[2].split()
        for field, number in zip(fields.split(), numbers, strict=True):
            if (protocol, field) in SNMP_COUNTERS:
                total += int(number)
    with contextlib.suppress(FileNotFoundError):  # a kernel without IPv6
        for line in (here / "snmp6").read_text().splitlines():
            field, _, number = line.partition(" ")
            if field in SNMP6_COUNTERS:
                total += int(number)
    return total


def host_addresses() -> list[str]:
    """This host's own IPv4 addresses (each blocked: a service bound to 0.0.0.0 listens there)."""
    ip = shutil.which("ip")
    if ip is None:
        return []
    listing = subprocess.run(
        [ip, "-o", "-4", "addr", "show"], capture_output=True, text=True, check=False
    ).stdout
    found = []
    for line in listing.split("\n"):
        fields = line.split()
        if "inet" in fields:
            address = fields[fields.index("inet") + 1].split("/")[0]
            with contextlib.suppress(ValueError):
                if not ipaddress.IPv4Address(address).is_loopback:
                    found.append(f"{address}/32")
    return found


def route_commands() -> str:
    """``ip -batch`` input that brings loopback up and prohibits what a script may not reach."""
    lines = ["link set lo up"]
    lines += [f"route add prohibit {network}" for network in (*BLOCKED_RANGES, *host_addresses())]
    return "\n".join(lines) + "\n"


@functools.cache
def resolv_conf() -> Path:
    """A resolv.conf naming slirp's resolver, mounted over /etc/resolv.conf in the sandbox."""
    directory = Path(tempfile.mkdtemp(prefix="rgrid-net-"))
    path = directory / "resolv.conf"
    path.write_text(f"nameserver {SLIRP_DNS}\n")
    path.chmod(0o644)
    directory.chmod(0o755)
    return path


def host_loopback() -> bool:
    """Whether ``RGRID_SANDBOX_HOST_LOOPBACK`` opens the host's loopback to sandboxes."""
    return os.environ.get(HOST_LOOPBACK_ENV, "").strip().lower() in ("1", "on", "true", "yes")


def problem() -> str | None:
    """Why user-mode networking cannot be had here, or None."""
    if os.geteuid() != 0:
        return "the grid is not root (it needs to make network namespaces)"
    missing = [tool for tool in ("ip", "slirp4netns") if shutil.which(tool) is None]
    if missing:
        return f"not installed: {', '.join(missing)} (apt-get install iproute2 slirp4netns)"
    return None


class NetworkPool:
    """Network namespaces with user-mode networking, made on demand and reused one at a time."""

    def __init__(self) -> None:
        self._free: list[Namespace] = []
        self._routes = route_commands()
        # a thread lock, not an asyncio one: the pool outlives any one event loop
        self._lock = threading.Lock()
        _remove_stale()

    @contextlib.asynccontextmanager
    async def namespace(self) -> AsyncIterator[Namespace]:
        """A namespace for one sandbox; given back for reuse when the block ends normally."""
        ready = self._take()
        if ready is None:
            ready = await asyncio.to_thread(self._make)
        try:
            yield ready
        except BaseException:
            await asyncio.to_thread(ready.close)  # the sandbox may not be gone: do not reuse it
            raise
        with self._lock:
            self._free.append(ready)

    def _take(self) -> Namespace | None:
        with self._lock:
            while self._free:
                candidate = self._free.pop()
                if candidate.alive():
                    return candidate
                candidate.close()  # its slirp4netns died: make another
        return None

    def close(self) -> None:
        with self._lock:
            while self._free:
                self._free.pop().close()

    def _make(self) -> Namespace:
        name = f"{NAME_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
            subprocess.run(
                ["ip", "-n", name, "-batch", "-"],
                input=self._routes.encode(),
                check=True,
                capture_output=True,
            )
            slirp, exit_write = _start_slirp(name)
        except (OSError, subprocess.SubprocessError) as exc:
            _delete_netns(NETNS_DIR / name)
            stderr = getattr(exc, "stderr", b"") or b""
            raise errors.SandboxError(
                f"could not set up the sandbox's network: {exc} {stderr.decode(errors='replace')}",
                hint="set RGRID_SANDBOX_NETWORK=host to share the host's network instead",
            ) from exc
        return Namespace(name, slirp, exit_write)


@functools.cache
def shared_pool() -> NetworkPool:
    """This process's pool (the sandbox object itself is made per execution)."""
    return NetworkPool()


def _start_slirp(name: str) -> tuple[subprocess.Popen[bytes], int]:
    """slirp4netns serving the namespace, ready, and the pipe end that keeps it running."""
    ready_read, ready_write = os.pipe()
    exit_read, exit_write = os.pipe()
    try:
        slirp = subprocess.Popen(
            [
                "slirp4netns",
                "--configure",
                f"--mtu={SLIRP_MTU}",
                *([] if host_loopback() else ["--disable-host-loopback"]),
                "--netns-type=path",
                f"--ready-fd={ready_write}",
                f"--exit-fd={exit_read}",
                str(NETNS_DIR / name),
                TAP,
            ],
            pass_fds=(ready_write, exit_read),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # not in the grid's group: a Ctrl-C is the grid's to handle
        )
    finally:
        os.close(ready_write)
        os.close(exit_read)
    try:
        ready = _read_with_timeout(ready_read, READY_TIMEOUT_S)
    finally:
        os.close(ready_read)
    if ready != b"1":
        os.close(exit_write)
        slirp.kill()
        _, stderr = slirp.communicate()
        raise subprocess.SubprocessError(f"slirp4netns did not start: {stderr!r}")
    return slirp, exit_write


def _read_with_timeout(fd: int, timeout_s: float) -> bytes:
    import select

    readable, _, _ = select.select([fd], [], [], timeout_s)
    return os.read(fd, 1) if readable else b""


def _remove_stale() -> None:
    """Namespaces left by a grid process that died (their slirp4netns exited with it)."""
    if not NETNS_DIR.is_dir():
        return
    for path in NETNS_DIR.glob(f"{NAME_PREFIX}*"):
        owner = path.name.removeprefix(NAME_PREFIX).split("-", 1)[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            _delete_netns(path)
