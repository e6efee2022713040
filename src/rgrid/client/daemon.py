"""The local grid daemon: started on demand in the background on 127.0.0.1, reused afterwards.

State lives in ``RGRID_HOME``: ``server.json`` (pid, url), ``server.log``, ``admin.key``
(written by the server on first start, mode 0600), ``daemon.lock`` (one starter at a time).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

from rgrid import errors, proc
from rgrid.client.http import connect
from rgrid.envs.passed import PASSED_SETTINGS

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0

#: what the daemon keeps of its starter's environment: where programs are, whose it is, the
#: locale and time zone, the temporary directory, rgrid's own settings, and what an environment
#: build takes from the grid (TLS trust, proxies, the package index: the names of
#: ``rgrid.envs.passed.PASSED_SETTINGS``). Anything else — a virtual environment, PYTHONPATH,
#: PYTHONHOME, other UV_* and CONDA_* variables — is the shell's, not the grid's.
KEPT_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        *PASSED_SETTINGS,
    }
)
KEPT_PREFIXES = ("RGRID_", "LC_", "AWS_")


# not a dataclass: every command makes one, and compiling a dataclass's methods costs ms
class DaemonInfo(NamedTuple):
    url: str
    pid: int
    home: Path

    @property
    def admin_key(self) -> str:
        return (self.home / "admin.key").read_text().strip()


def _state_path(home: Path) -> Path:
    return home / "server.json"


def _healthy(url: str) -> bool:
    """The server answers /health (used while starting it)."""
    from rgrid.client.http import Transport, TransportError

    transport = Transport(url)
    try:
        return transport.request("GET", "/health", timeout=2.0).status == 200
    except TransportError:
        return False
    finally:
        transport.close()


def _listening(url: str) -> bool:
    """Something accepts connections on the daemon's port: enough for a recorded, live pid.

    A full /health request would cost a round trip on every command; the first real request
    reports any deeper problem anyway.
    """
    parts = urlsplit(url)
    try:
        with connect(parts.hostname or "127.0.0.1", parts.port or 80, 1.0):
            return True
    except OSError:
        return False


def status(home: Path) -> DaemonInfo | None:
    """The running daemon of ``home``, or None."""
    try:
        state = json.loads(_state_path(home).read_text())
        info = DaemonInfo(url=str(state["url"]), pid=int(state["pid"]), home=home)
    except (OSError, ValueError, KeyError):
        return None
    return info if proc.alive(info.pid) and _listening(info.url) else None


@contextlib.contextmanager
def _lock(home: Path) -> Iterator[None]:
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    with (home / "daemon.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(home: Path, port: int | None = None) -> tuple[DaemonInfo, bool]:
    """Start the daemon unless it runs; returns (info, started_now)."""
    with _lock(home):
        running = status(home)
        if running is not None:
            return running, False
        port = port or _free_port()
        url = f"http://127.0.0.1:{port}"
        import subprocess  # here: only a start needs it, and most commands find the grid running

        with (home / "server.log").open("ab") as log:
            process = subprocess.Popen(
                # -P: the working directory is not put on sys.path (RGRID_HOME holds no code)
                [sys.executable, "-P", "-m", "rgrid", "server", "run", "--port", str(port)],
                env=daemon_environment(os.environ, home),
                cwd=home,  # never the caller's directory, which may be deleted under it
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                close_fds=True,  # nothing of the caller's but the log
                start_new_session=True,  # survives the terminal that started it
            )
        _state_path(home).write_text(json.dumps({"pid": process.pid, "url": url}))
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise errors.ConnectionFailed(
                    f"the local grid exited at start (code {process.returncode})",
                    hint=f"see {home / 'server.log'}",
                )
            if _healthy(url) and (home / "admin.key").exists():
                return DaemonInfo(url=url, pid=process.pid, home=home), True
            time.sleep(0.05)
        process.kill()
        raise errors.ConnectionFailed(
            "the local grid did not become ready in time", hint=f"see {home / 'server.log'}"
        )


def daemon_environment(environ: Mapping[str, str], home: Path) -> dict[str, str]:
    """The local daemon's environment: ``environ`` reduced to ``KEPT_NAMES`` and names with
    ``KEPT_PREFIXES``, and ``RGRID_HOME``."""
    kept = {
        name: value
        for name, value in environ.items()
        if name in KEPT_NAMES or name.startswith(KEPT_PREFIXES)
    }
    return {**kept, "RGRID_HOME": str(home)}


def stop(home: Path) -> DaemonInfo | None:
    """Stop the daemon (SIGTERM, then SIGKILL after a grace period); None if none ran."""
    info = status(home)
    if info is None:
        return None
    import signal  # only to stop it: not on every command's path

    os.kill(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while proc.alive(info.pid) and time.monotonic() < deadline:
        _reap(info.pid)
        time.sleep(0.05)
    if proc.alive(info.pid):
        os.kill(info.pid, signal.SIGKILL)
    _state_path(home).unlink(missing_ok=True)
    return info


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
