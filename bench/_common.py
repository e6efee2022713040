"""Pieces the bench scripts share (they run as `python bench/<name>.py`, so this imports as
`_common`)."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def real_python() -> str:
    """The interpreter behind `python3` on PATH, resolved once (not the shim)."""
    out = subprocess.run(
        ["python3", "-c", "import sys; print(sys.executable)"], capture_output=True, text=True
    )
    return out.stdout.strip() or sys.executable


def timed(argv: Sequence[str], runs: int, cwd: Path, env: dict[str, str]) -> list[float]:
    """Wall-clock seconds of ``runs`` runs of ``argv``; a failed run ends the bench."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True)
        samples.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{argv} failed: {done.stderr.decode()[-500:]}")
    return samples


#: the one-line script of the start-up benches
HELLO = 'print("hello from", __name__)\n'


def median_ms(samples: Sequence[float]) -> float:
    return statistics.median(samples) * 1000


def p90_ms(samples: Sequence[float]) -> float:
    return sorted(samples)[max(int(len(samples) * 0.9) - 1, 0)] * 1000


def hello_project(tmp: Path) -> tuple[Path, dict[str, str]]:
    """``tmp/project`` holding hello.py, and the environment of a user whose local grid and
    home are in ``tmp`` (no RGRID_* variable of the shell)."""
    project = tmp / "project"
    project.mkdir()
    (project / "hello.py").write_text(HELLO)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RGRID_")}
    env.update(RGRID_HOME=str(tmp / "home"), HOME=str(tmp / "user"))
    return project, env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kill_processes_mentioning(text: str) -> int:
    """SIGKILL every process whose command line mentions ``text`` (a Ray temp dir: how a bench
    stops the Ray it started, never with `ray stop`, which stops every Ray of the machine)."""
    import os
    import signal

    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if text.encode() in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
        except OSError:
            continue
    return killed


def start_server(
    home: Path, database: str | None = None, **settings: str
) -> tuple[subprocess.Popen[bytes], str]:
    """``rgrid server run`` of this environment on a free loopback port with ``home`` as its
    RGRID_HOME (and ``database`` as its store, if given; ``settings``: more RGRID_* variables),
    once it answers; and its URL."""
    import os

    import httpx

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RGRID_")}
    env["RGRID_HOME"] = str(home)
    if database:
        env["RGRID_DATABASE_URL"] = database
    env.update(settings)
    log = (home / "server.log").open("ab")
    rgrid = Path(sys.executable).parent / "rgrid"
    process = subprocess.Popen(
        [str(rgrid), "server", "run", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("the server did not start")


def postgres_database(name: str) -> str:
    """A fresh database ``name`` on the local PostgreSQL (dropped first if it is there)."""
    import asyncio

    import asyncpg

    async def create() -> None:
        conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()

    asyncio.run(create())
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def new_account(url: str, home: Path, name: str) -> tuple[str, str]:
    """An account made with the grid's admin key: its API key and its id."""
    import httpx

    admin = (home / "admin.key").read_text().strip()
    made = httpx.post(
        f"{url}/api/v1/accounts", json={"name": name}, headers={"authorization": f"Bearer {admin}"}
    ).json()
    return made["key"], made["account"]["id"]
