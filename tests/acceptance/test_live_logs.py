"""Acceptance: live logs that never lose or repeat a line, through disconnects and restarts
(issue 4). Real CLI, real server, real processes: nothing is mocked."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.acceptance.conftest import json_of, new_account, run_id, status_of, wait_for
from tests.conftest import RGRID_BIN, Cli, LiveServer, make_server

from rgrid import errors, schemas
from rgrid.client.websocket import connect
from rgrid.services import logs as logs_service

FOLLOW_TIMEOUT_S = 60.0


def ticker(count: int, interval: float = 0.05, start: int = 1) -> str:
    """A script printing ``start..start+count-1``, one line every ``interval`` seconds."""
    return (
        "import time\n"
        f"for i in range({start}, {start + count}):\n"
        "    print(i, flush=True)\n"
        f"    time.sleep({interval})\n"
    )


def submit(cli: Cli, workdir: Path, name: str, script: str) -> str:
    """``rgrid run --detach NAME``: the execution id."""
    (workdir / name).write_text(script)
    result = cli("run", "--detach", name)
    assert result.returncode == 0, result.stderr
    return run_id(result)


def numbers(first: int, last: int) -> list[str]:
    return [str(i) for i in range(first, last + 1)]


def bearer(cli: Cli) -> dict[str, str]:
    """The Authorization header of the account a CLI runs as."""
    return {"Authorization": f"Bearer {cli.env['RGRID_API_KEY']}"}


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class Follower:
    """``rgrid logs ID --follow`` as a subprocess; its stdout lines are collected as they come
    (with their arrival time), so a test can act while it runs."""

    def __init__(self, cli: Cli, execution_id: str, *flags: str) -> None:
        self.process = subprocess.Popen(
            [str(RGRID_BIN), "logs", execution_id, "--follow", *flags],
            cwd=cli.cwd,
            env=cli.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.arrivals: list[float] = []
        self.stderr = ""
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.arrivals.append(time.monotonic())
            self.lines.append(line.rstrip("\n"))

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        self.stderr = self.process.stderr.read()

    def wait(self, timeout: float = FOLLOW_TIMEOUT_S) -> int:
        """The follower's exit code; fails the test if it does not end by itself in time."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"the follower did not end within {timeout}s; stderr: {self.stderr!r}")
        for reader in self._readers:
            reader.join(10)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def following(cli: Cli, execution_id: str, *flags: str) -> Iterator[Follower]:
    follower = Follower(cli, execution_id, *flags)
    try:
        yield follower
    finally:
        follower.kill()


class CuttingProxy:
    """A TCP proxy on 127.0.0.1 to ``target_port`` that cuts every live connection about
    every ``cut_every`` seconds (both directions shut down, then closed)."""

    def __init__(self, target_port: int, cut_every: float = 1.0) -> None:
        self._target = target_port
        self._cut_every = cut_every
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._pairs: list[_Pair] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._loops: list[threading.Thread] = []
        self._pumps: list[threading.Thread] = []
        self.connections = 0
        self.cuts = 0  # connections cut while both sides were still talking

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        for target in (self._accept_loop, self._cut_loop):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._loops.append(thread)

    def close(self) -> None:
        self._stop.set()
        for thread in self._loops:
            thread.join(5)
        self._listener.close()
        self._cut_all()
        for thread in self._pumps:
            thread.join(5)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self._target), timeout=5)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            pair = _Pair(client, upstream)
            with self._lock:
                self._pairs.append(pair)
                self.connections += 1
            for src, dst in ((client, upstream), (upstream, client)):
                pump = threading.Thread(target=self._pump, args=(pair, src, dst), daemon=True)
                pump.start()
                self._pumps.append(pump)

    @staticmethod
    def _pump(pair: _Pair, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            pair.alive = False
            for sock in pair.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _cut_loop(self) -> None:
        while not self._stop.wait(self._cut_every):
            self.cuts += self._cut_all()

    def _cut_all(self) -> int:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        live = 0
        for pair in pairs:
            live += pair.alive
            for sock in pair.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # wakes the pumps blocked in recv
                sock.close()
        return live


@dataclasses.dataclass
class _Pair:
    client: socket.socket
    upstream: socket.socket
    alive: bool = True

    @property
    def sockets(self) -> tuple[socket.socket, socket.socket]:
        return self.client, self.upstream


# 1. ------------------------------------------------------------------------------------------


def test_follow_shows_every_line_live_and_in_order_then_ends(
    account_cli: Cli, workdir: Path
) -> None:
    execution_id = submit(account_cli, workdir, "tick.py", ticker(200))

    with following(account_cli, execution_id, "--raw") as follower:
        code = follower.wait()
        ended = time.time()

    assert code == 0, follower.stderr
    assert follower.lines == numbers(1, 200)
    # live, not replayed at the end: the first line came long before the last
    assert follower.arrivals[-1] - follower.arrivals[0] > 5.0
    status = status_of(account_cli, execution_id)
    assert status["state"] == "succeeded"
    assert f"{execution_id}: succeeded, exit code 0" in follower.stderr
    # it ended by itself, when the execution did
    assert ended - parse_time(status["finished_at"]).timestamp() < 5.0


# 2. ------------------------------------------------------------------------------------------


def test_follow_through_a_proxy_that_keeps_cutting_the_connection(
    account_cli: Cli, workdir: Path, live_server: LiveServer
) -> None:
    execution_id = submit(account_cli, workdir, "tick.py", ticker(120))
    proxy = CuttingProxy(live_server.port, cut_every=1.0)
    proxy.start()
    try:
        env = {**account_cli.env, "RGRID_API_URL": proxy.url}
        with following(Cli(cwd=workdir, env=env), execution_id, "--raw") as follower:
            code = follower.wait()
    finally:
        proxy.close()

    assert code == 0, follower.stderr
    assert follower.lines == numbers(1, 120)  # each once, none lost, in order
    lost = [line for line in follower.stderr.splitlines() if "log stream lost" in line]
    assert len(lost) >= 3 and all("reconnecting in" in line for line in lost), follower.stderr
    assert "log stream back, resuming after line" in follower.stderr
    assert proxy.cuts >= 3, f"the proxy cut only {proxy.cuts} live connections"
    assert status_of(account_cli, execution_id)["state"] == "succeeded"


# 3. ------------------------------------------------------------------------------------------


def test_follow_survives_a_killed_and_restarted_server(tmp_path: Path) -> None:
    """SIGKILL takes the script down with the server; after the restart the execution ends
    through its expired lease (``worker_lost``, then an automatic retry when the grid retries).
    Whatever was stored, the follower started before the kill printed exactly once, in order."""
    server = make_server(tmp_path)
    project = tmp_path / "project"
    project.mkdir()
    server.start()
    try:
        cli = Cli(cwd=project, env=server.cli_env())
        execution_id = submit(cli, project, "tick.py", ticker(200))
        with following(cli, execution_id, "--raw") as follower:
            wait_for(lambda: len(follower.lines) >= 40, timeout=30)
            server.kill()  # SIGKILL: no clean shutdown, the sandbox dies with it
            time.sleep(1.0)
            server.start()  # same home, same port
            code = follower.wait()

        assert code == 0, follower.stderr
        assert "log stream lost" in follower.stderr, follower.stderr
        assert "log stream back, resuming after line" in follower.stderr
        history = cli("logs", execution_id, "--raw")
        assert history.returncode == 0, history.stderr
        # every stored stdout line, each once, in order: no gap, no repeat
        assert follower.lines == history.stdout.splitlines()

        lines = json_of(cli("logs", execution_id, "--json"))
        assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))
        by_attempt: dict[int, list[str]] = {}
        for line in lines:
            if line["stream"] == "stdout":
                by_attempt.setdefault(line["attempt"], []).append(line["text"].rstrip("\n"))
        first = by_attempt[1]
        assert len(first) >= 40 and first == numbers(1, len(first))  # cut short, no gap
        status = status_of(cli, execution_id)
        assert f"{execution_id}: {status['state']}, exit code" in follower.stderr
        if status["attempt"] == 1:  # not retried
            assert (status["state"], status["failure_class"]) == ("failed", "worker_lost")
        else:  # retried after worker_lost: the last attempt ran the whole script
            assert "worker_lost" in status["retry_reason"]
            assert status["state"] == "succeeded"
            assert by_attempt[status["attempt"]] == numbers(1, 200)
    finally:
        server.stop()


# 4. ------------------------------------------------------------------------------------------

CHATTY_LINES = 200_000
CHATTY = f"for i in range({CHATTY_LINES}):\n    print(i)\n"


def _bare_seconds(script: Path) -> float:
    interpreter = getattr(sys, "_base_executable", None) or sys.executable
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    done = subprocess.run(
        [interpreter, str(script)], stdout=subprocess.PIPE, env=env, check=True, timeout=60
    )
    elapsed = time.perf_counter() - start
    assert done.stdout.count(b"\n") == CHATTY_LINES
    return elapsed


def _rgrid_seconds(cli: Cli) -> tuple[str, float]:
    """The script run by rgrid with its output captured (submitted detached, so no live
    follower competes for the 2 cores): the execution and its recorded duration."""
    execution_id = cli("run", "--detach", "chatty.py").stdout.strip()
    status = wait_for(
        lambda: (s := status_of(cli, execution_id))["state"] in ("succeeded", "failed") and s,
        timeout=120,
    )
    assert status["state"] == "succeeded"
    started, finished = parse_time(status["started_at"]), parse_time(status["finished_at"])
    return execution_id, (finished - started).total_seconds()


def test_a_chatty_script_is_not_slowed_down_and_every_line_is_kept(
    account_cli: Cli, workdir: Path, live_server: LiveServer
) -> None:
    script = workdir / "chatty.py"
    script.write_text(CHATTY)
    bares: list[float] = []
    runs: list[tuple[str, float]] = []
    for _ in range(3):  # interleaved, best of each: a burst of load hits both sides
        bares.append(_bare_seconds(script))
        runs.append(_rgrid_seconds(account_cli))
    bare = min(bares)
    execution_id, under_rgrid = min(runs, key=lambda run: run[1])
    ratio = under_rgrid / bare
    print(
        f"\n200,000 lines: bare {[round(b, 3) for b in bares]}s, under rgrid "
        f"{[round(r[1], 3) for r in runs]}s, best ratio {ratio:.2f}"
    )
    assert ratio <= 2.0, f"bare {bare:.3f}s, under rgrid {under_rgrid:.3f}s"

    history = account_cli("logs", execution_id, "--raw", timeout=120)
    assert history.returncode == 0, history.stderr
    assert history.stdout.splitlines() == [str(i) for i in range(CHATTY_LINES)]

    texts: list[str] = []
    seqs: list[int] = []
    after = 0
    with httpx.Client(base_url=live_server.url, headers=bearer(account_cli), timeout=30) as client:
        while True:
            response = client.get(
                f"/api/v1/executions/{execution_id}/logs", params={"after": after, "limit": 7000}
            )
            assert response.status_code == 200, response.text
            page = response.json()
            assert len(page["data"]) <= 7000
            if not page["data"]:
                assert page["done"] is True
                break
            seqs.extend(line["seq"] for line in page["data"])
            texts.extend(line["text"] for line in page["data"] if line["stream"] == "stdout")
            assert page["last_seq"] == page["data"][-1]["seq"]
            after = page["last_seq"]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # consecutive, no gap, no repeat
    assert seqs[0] == 1
    assert texts == [f"{i}\n" for i in range(CHATTY_LINES)]


# 5. ------------------------------------------------------------------------------------------

INTERLEAVED = """\
import sys, time
for i in range(50):
    print(f"o{i}", flush=True)
    time.sleep(0.01)
    print(f"e{i}", file=sys.stderr, flush=True)
    time.sleep(0.01)
"""


def test_interleaved_stdout_and_stderr_keep_their_order(account_cli: Cli, workdir: Path) -> None:
    (workdir / "both.py").write_text(INTERLEAVED)
    result = account_cli("run", "both.py")
    assert result.returncode == 0, result.stderr
    execution_id = run_id(result)

    shown = account_cli("logs", execution_id)
    assert shown.returncode == 0, shown.stderr
    expected = [line for i in range(50) for line in (f"out| o{i}", f"err| e{i}")]
    assert [line for line in shown.stdout.splitlines() if line[:4] in ("out|", "err|")] == expected


# 6. ------------------------------------------------------------------------------------------


def _handshake(port: int, target: str, headers: dict[str, str]) -> tuple[str, bytes]:
    """A raw WebSocket opening handshake: the status line and body of the answer."""
    request = [
        f"GET {target} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(request) + "\r\n\r\n").encode())
        reader = sock.makefile("rb")
        status_line = reader.readline().decode("latin-1").strip()
        length = 0
        while line := reader.readline().decode("latin-1").strip():
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        return status_line, reader.read(length)


def test_bad_after_values_are_refused(
    account_cli: Cli, workdir: Path, live_server: LiveServer
) -> None:
    (workdir / "one.py").write_text("print('one')\n")
    execution_id = run_id(account_cli("run", "one.py"))
    headers = bearer(account_cli)
    url = f"{live_server.url}/api/v1/executions/{execution_id}/logs"
    for bad in ("-1", "abc"):
        response = httpx.get(url, params={"after": bad}, headers=headers)
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["error"]["code"] == "VALIDATION_ERROR"

    for bad in ("-1", "abc"):
        with pytest.raises(errors.InvalidRequest):
            connect(
                live_server.url,
                f"/api/v1/executions/{execution_id}/logs/stream",
                params={"after": bad},
                headers=headers,
                timeout=10,
            )
    # on the wire: the handshake is answered with HTTP 422 and the error body, not upgraded
    status_line, body = _handshake(
        live_server.port, f"/api/v1/executions/{execution_id}/logs/stream?after=-1", headers
    )
    assert status_line.split()[1] == "422", status_line
    assert json.loads(body)["error"]["code"] == "VALIDATION_ERROR"
    # a valid one is accepted and ends with the final page
    stream = connect(
        live_server.url,
        f"/api/v1/executions/{execution_id}/logs/stream",
        params={"after": 0},
        headers=headers,
        timeout=10,
    )
    try:
        pages = list(stream.messages())
    finally:
        stream.close()
    assert pages[-1]["done"] is True
    assert [line["text"] for page in pages for line in page["data"]] == ["one\n"]


def _stream_pages(live_server: LiveServer, execution_id: str, cli: Cli) -> list[dict[str, Any]]:
    stream = connect(
        live_server.url,
        f"/api/v1/executions/{execution_id}/logs/stream",
        params={"after": 0},
        headers=bearer(cli),
        timeout=10,
    )
    try:
        return list(stream.messages())
    finally:
        stream.close()


def test_the_streams_last_page_brings_the_ended_execution_and_its_outputs(
    account_cli: Cli, workdir: Path, live_server: LiveServer
) -> None:
    # what `rgrid run` needs after the script ended comes with the stream's last page: no
    # request for the execution or its outputs follows it
    (workdir / "two.py").write_text(
        "import os\n"
        "os.makedirs('out/empty', exist_ok=True)\n"
        "open('out/b.txt', 'w').write('b')\n"
        "open('a.txt', 'w').write('aa')\n"
        "for i in range(3):\n"
        "    print(i, flush=True)\n"
    )
    result = account_cli("run", "--remote-only", "--metadata", "team=blue", "two.py")
    assert result.returncode == 0, result.stderr
    execution_id = run_id(result)
    pages = _stream_pages(live_server, execution_id, account_cli)
    last = pages[-1]
    assert last["done"] is True
    assert all("execution" not in page for page in pages[:-1])
    url = f"{live_server.url}/api/v1/executions/{execution_id}"
    asked = httpx.get(url, headers=bearer(account_cli)).json()
    listed = httpx.get(
        f"{url}/artifacts", params={"kind": "output"}, headers=bearer(account_cli)
    ).json()
    # the same as asking, once read by the client (the two write times the same instant)
    assert schemas.dump(schemas.load(schemas.ExecutionPublic, last["execution"])) == schemas.dump(
        schemas.load(schemas.ExecutionPublic, asked)
    )
    assert last["execution"]["output_dirs"] == ["out/empty"]
    assert last["execution"]["metadata"] == {"team": "blue"}
    assert [a["path"] for a in last["outputs"]] == ["a.txt", "out/b.txt"]
    assert schemas.dump(
        schemas.load(schemas.ArtifactsPublic, {**listed, "data": last["outputs"]})
    ) == (schemas.dump(schemas.load(schemas.ArtifactsPublic, listed)))
    # and the CLI, given them, downloads the same files as ever
    again = account_cli("wait", execution_id)
    assert again.returncode == 0, again.stderr
    assert (workdir / "a.txt").read_text() == "aa"
    assert (workdir / "out" / "b.txt").read_text() == "b"
    assert (workdir / "out" / "empty").is_dir()


def test_a_log_page_asked_with_outputs_brings_them_once_the_log_ends(
    account_cli: Cli, workdir: Path, live_server: LiveServer
) -> None:
    # a cache hit's CLI reads the ended log in one request: its last page carries the outputs
    (workdir / "three.py").write_text(
        "import os\n"
        "os.makedirs('out', exist_ok=True)\n"
        "open('out/c.txt', 'w').write('ccc')\n"
        "for i in range(3):\n"
        "    print(i, flush=True)\n"
    )
    first = account_cli("run", "--metadata", "team=red", "three.py")
    assert first.returncode == 0, first.stderr
    (workdir / "out" / "c.txt").unlink()
    url = f"{live_server.url}/api/v1/executions/{run_id(first)}/logs"
    headers = bearer(account_cli)

    whole = httpx.get(url, params={"outputs": "true"}, headers=headers).json()
    plain = httpx.get(url, headers=headers).json()
    partial = httpx.get(url, params={"outputs": "true", "limit": 2}, headers=headers).json()

    assert [line["text"] for line in whole["data"]] == ["0\n", "1\n", "2\n"] and whole["done"]
    assert [a["path"] for a in whole["outputs"]] == ["out/c.txt"]
    assert whole["execution"]["metadata"] == {"team": "red"}
    assert whole["execution"]["state"] == "succeeded"
    assert "outputs" not in plain and "execution" not in plain  # only when asked for
    assert not partial["done"] and "outputs" not in partial  # not before the log's end
    bad = httpx.get(url, params={"outputs": "maybe"}, headers=headers)
    assert bad.status_code == 422, bad.text  # as for any other bad query value
    assert bad.json()["error"]["details"]["errors"][0]["loc"] == ["query", "outputs"]
    # the cache hit: its log and its output come back, the output's bytes the same
    again = account_cli("run", "--metadata", "team=red", "three.py")
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout and "(cached)" in again.stderr
    assert (workdir / "out" / "c.txt").read_text() == "ccc"


def test_too_many_outputs_to_list_on_the_last_page_are_asked_for(tmp_path: Path) -> None:
    # a grid of its own: the cluster profile's S3 test server would take a minute for these
    server = make_server(tmp_path)
    workdir = tmp_path / "project"
    workdir.mkdir()
    count = logs_service.FINAL_OUTPUTS + 1
    (workdir / "many.py").write_text(
        "import os\n"
        "os.makedirs('many')\n"
        f"for i in range({count}):\n"
        "    open(f'many/{i:04}.txt', 'w').write(str(i))\n"
    )
    server.start()
    try:
        cli = Cli(cwd=workdir, env=server.cli_env())
        result = cli("run", "many.py", timeout=180)
        assert result.returncode == 0, result.stderr
        last = _stream_pages(server, run_id(result), cli)[-1]
    finally:
        server.stop()
    assert last["done"] is True and last["outputs"] is None
    assert last["execution"]["state"] == "succeeded"
    # the CLI then asked for the list: every output came back
    assert sorted(p.name for p in (workdir / "many").iterdir()) == [
        f"{i:04}.txt" for i in range(count)
    ]
    assert (workdir / "many" / "1000.txt").read_text() == "1000"


def test_following_another_accounts_execution_is_not_found(
    account_cli: Cli, workdir: Path, live_server: LiveServer
) -> None:
    execution_id = submit(account_cli, workdir, "tick.py", ticker(100))
    _, other_key = new_account(Cli(cwd=workdir, env=live_server.cli_env()))
    other = Cli(cwd=workdir, env=live_server.cli_env(other_key))
    try:
        result = other("logs", execution_id, "--follow", timeout=30)
        unknown = other("logs", "exec_zzzzzzzzzzzzzzzz", "--follow", timeout=30)

        assert result.returncode == 1
        assert result.stdout == ""
        first = result.stderr.splitlines()[0]
        assert first == f"error: no execution '{execution_id}'", result.stderr
        # exactly what an id that does not exist gets: nothing says it is someone else's
        assert unknown.returncode == 1
        assert result.stderr.replace(execution_id, "ID") == unknown.stderr.replace(
            "exec_zzzzzzzzzzzzzzzz", "ID"
        )
        # the stream endpoint itself answers the same
        with pytest.raises(errors.NotFound):
            connect(
                live_server.url,
                f"/api/v1/executions/{execution_id}/logs/stream",
                params={"after": 0},
                headers=bearer(other),
                timeout=10,
            )
    finally:
        account_cli("cancel", execution_id)


def test_following_a_finished_execution_replays_then_ends(account_cli: Cli, workdir: Path) -> None:
    (workdir / "few.py").write_text(ticker(20, interval=0))
    result = account_cli("run", "few.py")
    assert result.returncode == 0, result.stderr
    execution_id = run_id(result)

    start = time.monotonic()
    followed = account_cli("logs", execution_id, "--follow", timeout=30)
    elapsed = time.monotonic() - start

    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.splitlines() == [f"out| {i}" for i in range(1, 21)]
    assert elapsed < 5.0


GARBAGE = """\
import os, sys
out = sys.stdout.buffer
out.write(os.urandom(5000))
out.write(b"\\n")
out.write(b"bad \\xff\\xfe utf8 \\xc3\\x28 and a cut \\xe2\\x82\\n")
out.write(b"mid\\x00nul\\r\\n")
out.flush()
sys.stderr.buffer.write(b"err \\xff\\n")
sys.stderr.flush()
out.write(LONG)
out.flush()
"""
LONG_BYTES = 200 * 1024


def test_binary_garbage_output_does_not_crash_anything(account_cli: Cli, workdir: Path) -> None:
    long_line = "".join(chr(ord("a") + i % 26) for i in range(LONG_BYTES))
    script = f"LONG = {long_line.encode()!r}\n" + GARBAGE
    (workdir / "garbage.py").write_text(script)
    result = account_cli("run", "garbage.py", timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    execution_id = run_id(result)
    assert status_of(account_cli, execution_id)["state"] == "succeeded"

    shown = subprocess.run(
        [str(RGRID_BIN), "logs", execution_id],
        cwd=workdir,
        env=account_cli.env,
        capture_output=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout.decode("utf-8")  # valid UTF-8: invalid input became U+FFFD
    assert "Traceback" not in shown.stderr.decode("utf-8", "replace")
    assert "out| bad \ufffd\ufffd utf8 \ufffd( and a cut \ufffd" in text
    assert "err| err \ufffd" in text
    raw = subprocess.run(
        [str(RGRID_BIN), "logs", execution_id, "--raw"],
        cwd=workdir,
        env=account_cli.env,
        capture_output=True,
        timeout=60,
    )
    assert raw.returncode == 0, raw.stderr
    assert raw.stdout.endswith(b"nul\r\n" + long_line.encode())  # pieces rejoined, unmarked
    assert "err \ufffd\n" in raw.stderr.decode("utf-8")

    lines = json_of(account_cli("logs", execution_id, "--json"))
    seqs = [line["seq"] for line in lines]
    assert seqs == list(range(1, len(seqs) + 1))
    tail = [line["text"] for line in lines if line["stream"] == "stdout"][-4:]
    assert [len(piece) for piece in tail] == [65536, 65536, 65536, LONG_BYTES - 3 * 65536]
    assert "".join(tail) == long_line


# 7. ------------------------------------------------------------------------------------------


def test_a_log_over_the_size_cap_ends_with_one_marker_line(tmp_path: Path) -> None:
    server = make_server(tmp_path, RGRID_MAX_LOG_BYTES="10000")
    project = tmp_path / "project"
    project.mkdir()
    (project / "many.py").write_text("for i in range(5000):\n    print(i)\n")
    server.start()
    try:
        cli = Cli(cwd=project, env=server.cli_env())
        result = cli("run", "many.py", timeout=60)
        assert result.returncode == 0, result.stderr
        execution_id = run_id(result)
        assert status_of(cli, execution_id)["state"] == "succeeded"

        lines = json_of(cli("logs", execution_id, "--json"))
        stdout = [line["text"] for line in lines if line["stream"] == "stdout"]
        system = [line for line in lines if line["stream"] == "system"]
        stored = sum(len(text.encode()) for text in stdout)
        assert stored <= 10_000
        assert stdout == [f"{i}\n" for i in range(len(stdout))]  # a prefix, no gap
        markers = [line for line in system if "limit" in line["text"]]
        assert len(markers) == 1, system
        marker = markers[0]
        assert lines[-1] == marker  # it ends the log
        dropped_lines = 5000 - len(stdout)
        dropped_bytes = sum(len(f"{i}\n") for i in range(5000)) - stored
        assert f"{dropped_lines} lines" in marker["text"]
        assert f"{dropped_bytes} bytes" in marker["text"]
        assert "10000 bytes" in marker["text"]
    finally:
        server.stop()
