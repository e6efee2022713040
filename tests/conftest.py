"""Fixtures shared by every tier: a clean environment, a live grid server, the real CLI."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rgrid.storage import blob_key

RGRID_BIN = Path(sys.executable).parent / "rgrid"
SERVER_START_TIMEOUT_S = 60.0
#: how long a server may take to stop once signalled (its slots' scripts are stopped first)
STOP_TIMEOUT_S = 30.0


@pytest.fixture(autouse=True)
def _clean_rgrid_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No RGRID_* variable of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("RGRID_"):
            monkeypatch.delenv(name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_http_answer(sock: socket.socket, received: bytes = b"") -> tuple[int, bytes]:
    """An HTTP/1.1 answer with a Content-Length, read from a raw socket (``received``: what of
    it was read already): its status and its body."""
    answer = received
    while b"\r\n\r\n" not in answer:
        part = sock.recv(65536)
        if not part:
            break
        answer += part
    head, _, body = answer.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split()[1]), body


def blob_name(digest: str) -> str:
    """The last part of the storage key a blob with content address ``digest`` has (its file's
    name on the grid's disk)."""
    return blob_key("any", digest).rsplit("/", 1)[1]


@dataclasses.dataclass
class LiveServer:
    """A real ``rgrid server run`` process on a loopback port, with its own RGRID_HOME."""

    home: Path
    port: int
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_key(self) -> str:
        return (self.home / "admin.key").read_text().strip()

    def metrics(self) -> str:
        """The Prometheus text of ``/metrics`` (it needs the admin key)."""
        headers = {"Authorization": f"Bearer {self.admin_key}"}
        response = httpx.get(f"{self.url}/metrics", headers=headers, timeout=10)
        response.raise_for_status()
        return response.text

    def start(self) -> None:
        log = (self.home / "server.log").open("ab")
        self.process = subprocess.Popen(
            [str(RGRID_BIN), "server", "run", "--port", str(self.port), "--log-level", "info"],
            env=self.env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.own_log()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not start")

    def delete_blob(self, digest: str) -> None:
        """Delete a stored blob behind the grid's back, wherever it keeps them (its disk, or
        the S3 bucket of the cluster profile)."""
        storage = self.env.get("RGRID_STORAGE_URL", "")
        if not storage.startswith("s3://"):
            (blob,) = [p for p in self.home.rglob(blob_name(digest)) if p.is_file()]
            blob.unlink()
            return
        import boto3

        bucket, _, prefix = storage.removeprefix("s3://").partition("/")
        client = boto3.client(
            "s3",
            endpoint_url=self.env["RGRID_S3_ENDPOINT_URL"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        listed = [o for page in pages for o in page.get("Contents", [])]  # 1,000 keys a page
        (key,) = [o["Key"] for o in listed if o["Key"].endswith("/" + blob_name(digest))]
        client.delete_object(Bucket=bucket, Key=key)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the server's process group and wait for it to end. One that has not
        ended after ``STOP_TIMEOUT_S`` is killed (never left running against a database the
        test drops) and the test fails: a server must stop when asked."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, sig)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(STOP_TIMEOUT_S)
            raise AssertionError(
                f"the server did not stop within {STOP_TIMEOUT_S} s of signal {sig}:\n"
                + self.own_log()
            ) from None

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def own_log(self, lines: int = 60) -> str:
        """The last ``lines`` of the server's own log (its warnings, tracebacks, retries),
        without the access log's lines."""
        log = self.home / "server.log"
        if not log.is_file():
            return ""
        own = [
            line
            for line in log.read_text(errors="replace").splitlines()
            if not line.startswith("INFO:     ")
        ]
        return "\n".join(own[-lines:])

    def cli_env(self, key: str | None = None, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RGRID_")}
        env.update(
            RGRID_API_URL=self.url,
            RGRID_API_KEY=key if key is not None else self.admin_key,
            HOME=str(self.home.parent / "user-home"),
        )
        env.update(extra)
        return env


def make_server(tmp: Path, **settings: str) -> LiveServer:
    home = tmp / "grid-home"
    home.mkdir(parents=True, exist_ok=True)
    (tmp / "user-home").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RGRID_")}
    env.update({"RGRID_HOME": str(home), "RGRID_SLOTS": "4", "RGRID_LEASE_S": "6", **settings})
    return LiveServer(home=home, port=free_port(), env=env)


#: ``GRID_PROFILE=cluster``: the shared grid of the acceptance tests is the cluster profile
#: (PostgreSQL, the S3 test server, a Ray cluster of two one-CPU nodes), so the local grid's
#: acceptance tests run unchanged against it (``make test`` does that for some modules)
PROFILE = os.environ.get("GRID_PROFILE", "local")


#: the modules on the session's Ray cluster: one xdist worker runs them all, so one cluster
#: starts (a second would take seconds and two more raylets on a 2-core machine)
RAY_MODULES = frozenset({"test_ray_cluster.py", "test_autoscaling.py", "test_executor_contract.py"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`make test` runs two workers with ``--dist loadgroup``) a module runs
    whole on one worker, so its module-scoped grid or browser starts once.

    In the cluster profile only the tests on the shared grid run again: a test that starts
    a grid of its own ran against that grid already in the local run."""
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        group = "ray" if module.rsplit("/", 1)[-1] in RAY_MODULES else module
        item.add_marker(pytest.mark.xdist_group(group))
    if PROFILE != "cluster":
        return
    shared = [item for item in items if "live_server" in getattr(item, "fixturenames", ())]
    others = [item for item in items if item not in shared]
    if others:
        config.hook.pytest_deselected(items=others)
        items[:] = shared


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test on a grid shows the end of that grid's own log (warnings, tracebacks,
    retries): a failure seen once in CI can then be read, not guessed at."""
    report = yield
    if report.failed and call.when == "call":
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, LiveServer):
                report.sections.append((f"server log ({value.home})", value.own_log()))
    return report


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One grid shared by the acceptance tests of a session (tests must not depend on its history)."""
    if PROFILE == "cluster":
        yield from cluster_profile_server(tmp_path_factory.mktemp("grid"))
        return
    server = make_server(tmp_path_factory.mktemp("grid"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """One Ray cluster (a head without CPUs, two one-CPU nodes on loopback) for the session's
    Ray tests: it takes seconds to start. Tests that kill a node add one back."""
    pytest.importorskip("ray", reason="the worker extra (make test installs it)")
    from tests.raycluster import start_ray_cluster

    with start_ray_cluster(workers=2) as cluster:
        yield cluster


def cluster_profile_server(tmp: Path, **settings: str) -> Iterator[LiveServer]:
    """A grid on PostgreSQL, the S3 test server and a loopback Ray cluster of two one-CPU
    nodes, the server itself running no scripts."""
    from tests.raycluster import RAY_ENV, start_ray_cluster
    from tests.s3server import start_s3_server

    s3_servers = start_s3_server()
    s3 = next(s3_servers)
    s3.client().create_bucket(Bucket="cluster")
    try:
        with start_ray_cluster(workers=2) as cluster, fresh_postgres_database("rgrid_cl") as db:
            server = make_server(
                tmp,
                RGRID_DATABASE_URL=db,
                RGRID_STORAGE_URL="s3://cluster/blobs",
                RGRID_EXECUTOR=f"ray://{cluster.address}",
                **{**s3.env(), **settings},
            )
            server.env.update(RAY_ENV)
            server.start()
            try:
                yield server
            finally:
                server.stop()
    finally:
        s3_servers.close()


@dataclasses.dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


@dataclasses.dataclass
class Cli:
    """Runs the installed ``rgrid`` binary as a user types it, in ``cwd``."""

    cwd: Path
    env: dict[str, str]

    def __call__(self, *args: str, timeout: float = 120, input: str | None = None) -> CliResult:
        done = subprocess.run(
            [str(RGRID_BIN), *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )
        return CliResult(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    return path


@pytest.fixture
def cli(live_server: LiveServer, workdir: Path) -> Cli:
    return Cli(cwd=workdir, env=live_server.cli_env())


@contextlib.contextmanager
def fresh_postgres_database(prefix: str) -> Iterator[str]:
    """A new PostgreSQL database on 127.0.0.1:5432, dropped afterwards; fails if it is down."""
    import asyncio
    import concurrent.futures
    import secrets

    import asyncpg

    name = f"{prefix}_{secrets.token_hex(4)}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def run(sql: str) -> None:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, admin(sql)).result()

    try:
        run(f'CREATE DATABASE "{name}"')
    except OSError as exc:
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is not reachable ({exc}); `make test` starts it")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A database of its own for one test."""
    with fresh_postgres_database("rgrid_acc") as url:
        yield url


def require_tool(name: str) -> str:
    """A tool the tests need: fail loudly (never skip) when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; `.ci/run` and `make test` install it")
    return path
