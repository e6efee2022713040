"""Scale-out on Ray (issue 16): the same CLI, scripts running on the nodes of a real Ray cluster
(a head without CPUs and two one-CPU worker nodes on loopback), the control plane on
PostgreSQL and a real S3 server, running no scripts itself."""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import os
import re
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.acceptance.conftest import json_of, new_account, run_id, status_of, wait_for
from tests.conftest import (
    RGRID_BIN,
    Cli,
    LiveServer,
    free_port,
    fresh_postgres_database,
    make_server,
)
from tests.raycluster import RayCluster, start_ray_cluster  # before Ray: its settings
from tests.s3server import S3Server, start_s3_server

from rgrid import digests

pytest.importorskip("ray", reason="the worker extra (make test installs it)")

MiB = 1024**2
GiB = 1024**3
SECRET_KEY = "x" * 43 + "="  # a Fernet key: the test computes attempt credentials with it


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    yield from start_s3_server()


@pytest.fixture(scope="module")
def cluster_server(
    tmp_path_factory: pytest.TempPathFactory, ray_cluster: RayCluster, s3: S3Server
) -> Iterator[LiveServer]:
    s3.client().create_bucket(Bucket="cluster")
    with fresh_postgres_database("rgrid_ray") as database:
        server = make_server(
            tmp_path_factory.mktemp("ray-grid"),
            RGRID_DATABASE_URL=database,
            RGRID_STORAGE_URL="s3://cluster/blobs",
            RGRID_EXECUTOR=f"ray://{ray_cluster.address}",
            RGRID_SECRET_KEY=SECRET_KEY,
            RGRID_BILLING_PERIOD_S="5",
            **s3.env(),
        )
        server.env.update(
            {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
        )
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def ray_cli(cluster_server: LiveServer, workdir: Path) -> Cli:
    admin = Cli(cwd=workdir, env=cluster_server.cli_env())
    _, key = new_account(admin)
    return Cli(cwd=workdir, env=cluster_server.cli_env(key))


def _nodes(cluster: RayCluster) -> dict[str, str]:
    """worker id → node id, for the cluster's worker nodes."""
    return {f"ray:{node.node_id[:16]}": node.node_id for node in cluster.nodes}


def test_a_script_runs_on_a_node_with_its_inputs_outputs_and_exit_code(
    ray_cli: Cli, workdir: Path, ray_cluster: RayCluster, cluster_server: LiveServer
) -> None:
    (workdir / "data.csv").write_text("a,b\n1,2\n3,4\n")
    (workdir / "job.py").write_text(
        "import sys, os, pathlib\n"
        "rows = open(sys.argv[1]).read().splitlines()\n"
        "pathlib.Path('out').mkdir(exist_ok=True)\n"
        "pathlib.Path('out/count.txt').write_text(str(len(rows)))\n"
        "print('rows', len(rows), 'secret', os.environ['TOKEN'][:3] + '...')\n"
        "print('to stderr', file=sys.stderr)\n"
        "sys.exit(3)\n"
    )
    result = ray_cli("run", "--env", "TOKEN=hunter2-topsecret", "job.py", "data.csv")
    assert result.returncode == 3, result.stderr
    assert result.stdout == "rows 3 secret hun...\n"
    assert "to stderr" in result.stderr
    assert (workdir / "out" / "count.txt").read_text() == "3"
    status = status_of(ray_cli, run_id(result))
    assert status["worker"] in _nodes(ray_cluster), status
    # the node asked where its inputs are and read them from the bucket itself
    log = (cluster_server.home / "server.log").read_text()
    data_sha = digests.of_bytes(b"a,b\n1,2\n3,4\n")
    path = urllib.parse.quote(f"/api/v1/attempt/inputs/{data_sha}")  # as uvicorn logs it
    assert f'"GET {path} HTTP/1.1" 307' in log


def test_workers_lists_each_node_with_its_slots_and_pythons(
    ray_cli: Cli, ray_cluster: RayCluster
) -> None:
    def listed() -> list[dict[str, object]] | None:
        rows = json_of(ray_cli("workers", "--json"))
        ray_rows = [row for row in rows if str(row["name"]).startswith("ray:")]
        probed = all(row["pythons"] for row in ray_rows)  # a node joining is probed first
        return ray_rows if len(ray_rows) == 2 and probed else None

    rows = wait_for(listed, timeout=20)
    assert {row["name"] for row in rows} == set(_nodes(ray_cluster))
    for row in rows:
        assert row["slots"] == 1
        assert row["executor"] == "ray"
        assert row["node"] == "127.0.0.1"
        assert row["pythons"], row
        assert "bubblewrap" in str(row["sandbox"]), row
    table = ray_cli("workers").stdout.splitlines()
    for row in rows:
        (line,) = [line for line in table if line.startswith(str(row["name"]))]
        assert "127.0.0.1" in line and "bubblewrap" in line and "/1" in line, line
    assert not [line for line in table if "host" in line.split()[0:1]]  # the server is none


def test_each_node_bills_its_own_periods_and_costs_become_final(
    ray_cli: Cli, workdir: Path, cluster_server: LiveServer
) -> None:
    (workdir / "work.py").write_text("import time\ntime.sleep(0.5)\nprint('ok')\n")
    result = ray_cli("run", "work.py")
    assert result.returncode == 0, result.stderr
    execution_id = run_id(result)
    status = wait_for(
        lambda: (s := status_of(ray_cli, execution_id))["cost_final"] and s, timeout=60
    )
    assert status["cost_micros"] > 0, status
    admin = {"Authorization": f"Bearer {cluster_server.admin_key}"}
    periods = httpx.get(f"{cluster_server.url}/api/v1/billing/periods", headers=admin).json()
    mine = [p for p in periods if any(s["execution_id"] == execution_id for s in p["shares"])]
    assert mine and {p["worker"] for p in mine} == {status["worker"]}  # the node's own periods
    # a node's periods run back to back from its first start: a 1-slot node at the grid's price
    node_periods = sorted(
        (p for p in periods if p["worker"] == status["worker"]), key=lambda p: p["start"]
    )
    for earlier, later in itertools.pairwise(node_periods):
        assert earlier["end"] == later["start"]


def test_a_batch_runs_on_both_nodes_never_more_at_once_than_their_cpus(
    ray_cli: Cli, workdir: Path, ray_cluster: RayCluster
) -> None:
    data = workdir / "data"
    data.mkdir()
    for index in range(20):
        (data / f"item{index:02d}.txt").write_text(f"item {index}\n")
    (workdir / "job.py").write_text(
        "import sys, time, pathlib\n"
        "t0 = time.time(); time.sleep(0.3)\n"
        "name = pathlib.Path(sys.argv[1]).name\n"
        "pathlib.Path('out').mkdir(exist_ok=True)\n"
        "pathlib.Path('out', name).write_text(open(sys.argv[1]).read().upper())\n"
        "print(f'{t0} {time.time()}')\n"
    )
    result = ray_cli("run", "--batch", "data/*.txt", "--parallel", "10", "job.py", timeout=300)
    assert result.returncode == 0, result.stderr
    listed = json_of(ray_cli("list", "--json", "--limit", "50"))["data"]
    items = [row for row in listed if row.get("batch_id")]
    assert len(items) == 20
    by_worker = collections.Counter(row["worker"] for row in items)
    assert set(by_worker) == set(_nodes(ray_cluster)), by_worker  # both nodes ran items
    spans = []
    for row in items:
        shown = ray_cli("logs", row["id"], "--raw")
        start, end = map(float, shown.stdout.split())
        spans.append((start, end))
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most <= 2, spans  # two CPUs in the cluster


def test_the_env_secret_never_appears_in_rays_session_files(
    ray_cli: Cli, workdir: Path, ray_cluster: RayCluster
) -> None:
    secret = "s3cr3t-" + hashlib.sha256(str(workdir).encode()).hexdigest()[:16]
    (workdir / "show.py").write_text("import os\nprint(len(os.environ['API_TOKEN']))\n")
    result = ray_cli("run", "--env", f"API_TOKEN={secret}", "show.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{len(secret)}\n"
    found = subprocess.run(
        ["grep", "-rl", "--binary-files=text", secret, str(ray_cluster.root)],
        capture_output=True,
        text=True,
    )
    assert found.stdout == "", found.stdout  # not in task arguments, logs, object spills


def test_an_attempt_credential_opens_its_own_execution_only_and_ends_with_it(
    ray_cli: Cli, workdir: Path, cluster_server: LiveServer, ray_cluster: RayCluster
) -> None:
    from rgrid.services import attempts
    from rgrid.services.secrets import SecretBox

    class _Grid:
        secrets = SecretBox(SECRET_KEY.encode())

    elsewhere = workdir.parent / "elsewhere"  # not in the project tree of the run below
    elsewhere.mkdir()
    (elsewhere / "other.txt").write_text("someone else's input\n")
    (elsewhere / "cat.py").write_text("import sys\nprint(open(sys.argv[1]).read(), end='')\n")
    other = Cli(cwd=elsewhere, env=ray_cli.env)("run", "cat.py", "other.txt")
    assert other.returncode == 0, other.stderr
    other_sha = digests.of_bytes(b"someone else's input\n")

    (workdir / "wait.py").write_text("import time\nprint('started', flush=True)\ntime.sleep(30)\n")
    (workdir / "mine.txt").write_text("mine\n")
    started = ray_cli("run", "--detach", "wait.py", "mine.txt")
    assert started.returncode == 0, started.stderr
    execution_id = run_id(started)
    status = wait_for(
        lambda: (s := status_of(ray_cli, execution_id))["state"] == "running" and s, timeout=60
    )
    credential = attempts.issue(_Grid(), execution_id, status["attempt"], status["worker"])  # type: ignore[arg-type]
    headers = {"authorization": f"Attempt {credential}"}
    base = f"{cluster_server.url}/api/v1/attempt"
    mine_sha = digests.of_bytes(b"mine\n")
    with httpx.Client(timeout=10) as http:
        mine = http.get(f"{base}/inputs/{mine_sha}", headers=headers)
        assert mine.status_code == 307 and mine.headers["location"].startswith("http://127.0.0.1")
        assert http.get(f"{base}/inputs/{other_sha}", headers=headers).status_code == 404
        forged = credential[:-4] + ("0000" if not credential.endswith("0000") else "1111")
        assert (
            http.get(f"{base}/env", headers={"authorization": f"Attempt {forged}"}).status_code
            == 401
        )
        ray_cli("cancel", execution_id)
        wait_for(lambda: status_of(ray_cli, execution_id)["state"] == "cancelled", timeout=60)
        assert http.get(f"{base}/env", headers=headers).status_code == 401
        late = http.post(f"{base}/logs", headers=headers, json={"segments": []})
        assert late.status_code == 401


def test_ray_listens_on_loopback_only(ray_cluster: RayCluster) -> None:
    listening = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
    pids = set(ray_cluster.all_pids())
    wild = [
        line
        for line in listening.splitlines()
        if any(f"pid={pid}," in line for pid in pids)
        and not re.search(r"\s(127\.0\.0\.1|\[::ffff:127\.0\.0\.1\]|\[::1\]):\d+\s", line)
    ]
    assert wild == [], wild


ITEMS = 8
ITEM = """\
import sys, time, pathlib
print('start', pathlib.Path(sys.argv[1]).name, flush=True)
time.sleep(3)
pathlib.Path('out').mkdir(exist_ok=True)
pathlib.Path('out', pathlib.Path(sys.argv[1]).name).write_text(open(sys.argv[1]).read().upper())
print('done', flush=True)
"""


def test_a_node_killed_mid_batch_its_items_are_retried_on_the_other(
    ray_cli: Cli, workdir: Path, ray_cluster: RayCluster
) -> None:
    data = workdir / "data"
    data.mkdir()
    for index in range(ITEMS):
        (data / f"item{index:02d}.txt").write_text(f"item {index}\n")
    (workdir / "job.py").write_text(ITEM)
    victim = ray_cluster.nodes[0]
    victim_worker = f"ray:{victim.node_id[:16]}"
    batch = subprocess.Popen(
        [str(RGRID_BIN), "run", "--batch", "data/*.txt", "--parallel", "4", "job.py"],
        cwd=workdir,
        env=ray_cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def started_on_victim() -> list[str]:
        """Items running on the victim that already logged their first line."""
        listed = json_of(ray_cli("list", "--json", "--limit", "50"))["data"]
        on_victim = [
            r["id"] for r in listed if r["state"] == "running" and r["worker"] == victim_worker
        ]
        return [i for i in on_victim if "start" in ray_cli("logs", i, "--raw").stdout]

    caught = wait_for(started_on_victim, timeout=60, interval=0.2)
    ray_cluster.kill(victim)
    try:
        _, err = batch.communicate(timeout=240)
    finally:
        ray_cluster.add_node("replacement")  # the next tests have two nodes again
    assert batch.returncode == 0, err
    for index in range(ITEMS):
        name = f"item{index:02d}.txt"
        got = workdir / "outputs" / f"item{index:02d}" / "out" / name
        assert got.read_text() == f"ITEM {index}\n"  # every output, byte for byte
    items = [
        r for r in json_of(ray_cli("list", "--json", "--limit", "50"))["data"] if r["batch_id"]
    ]
    retried = [r for r in items if r["attempt"] > 1]
    assert set(caught) <= {r["id"] for r in retried}
    for row in retried:
        assert row["state"] == "succeeded" and row["worker"] != victim_worker
        first = ray_cli("logs", row["id"], "--attempt", "1", "--raw").stdout.splitlines()
        assert first[:1] and first[0].startswith("start") and "done" not in first, first
        last = ray_cli("logs", row["id"], "--attempt", str(row["attempt"]), "--raw").stdout
        assert last.splitlines()[-1] == "done"


SLOW = """\
import sys, time, pathlib
n = sys.argv[1]
print('start', n, flush=True)
time.sleep(1)
pathlib.Path('out').mkdir(exist_ok=True)
pathlib.Path('out', f'{n}.txt').write_text(f'done {n}\\n')
print('end', n, flush=True)
"""


def test_the_server_killed_with_executions_on_ray_loses_none(
    ray_cli: Cli, workdir: Path, cluster_server: LiveServer
) -> None:
    """Killed with executions running on the nodes and more queued, then restarted once with a
    bad Ray address (it stops at start, nothing queued is lost) and once right: all finish."""
    (workdir / "slow.py").write_text(SLOW)
    ids = [ray_cli("run", "--detach", "slow.py", str(i)).stdout.strip() for i in range(10)]
    assert all(i.startswith("exec_") for i in ids)
    wait_for(lambda: any(status_of(ray_cli, i)["state"] == "succeeded" for i in ids), timeout=60)
    cluster_server.kill()
    good = cluster_server.env["RGRID_EXECUTOR"]
    cluster_server.env["RGRID_EXECUTOR"] = f"ray://127.0.0.1:{free_port()}"
    try:
        _fails_to_start(cluster_server, "cannot be reached")
    finally:
        cluster_server.env["RGRID_EXECUTOR"] = good
        cluster_server.start()

    def all_done() -> list[dict[str, object]] | None:
        by_id = {e["id"]: e for e in json_of(ray_cli("list", "--limit", "100", "--json"))["data"]}
        states = [by_id[i] for i in ids]
        return states if all(s["state"] in ("succeeded", "failed") for s in states) else None

    states = wait_for(all_done, timeout=180, interval=1.0)
    assert [s["state"] for s in states] == ["succeeded"] * 10
    for n, execution_id in enumerate(ids):
        lines = json_of(ray_cli("logs", execution_id, "--json"))
        succeeded_attempt = states[n]["attempt"]
        ends = [line["attempt"] for line in lines if line["text"] == f"end {n}\n"]
        assert ends.count(succeeded_attempt) == 1
        if len(ends) > 1:
            assert max(ends[:-1]) < succeeded_attempt and ends[-1] == succeeded_attempt
        got = workdir / "got" / str(n)
        assert ray_cli("download", execution_id, "--output-dir", str(got)).returncode == 0
        assert (got / "out" / f"{n}.txt").read_text() == f"done {n}\n"


# 7. bad configuration: a clear error at start, nothing queued lost ---------------------------


def _fails_to_start(server: LiveServer, message: str) -> None:
    with pytest.raises(RuntimeError, match="server exited"):
        server.start()
    log = (server.home / "server.log").read_text()
    assert message in log, log[-3000:]


def _bad_server(tmp_path: Path, s3: S3Server, **settings: str) -> LiveServer:
    server = make_server(tmp_path, **s3.env(), **settings)
    server.env.update({"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"})
    return server


def test_an_unreachable_ray_address_stops_the_grid_at_start(tmp_path: Path, s3: S3Server) -> None:
    address = f"127.0.0.1:{free_port()}"
    server = _bad_server(tmp_path, s3, RGRID_EXECUTOR=f"ray://{address}")
    _fails_to_start(server, f"the Ray cluster at '{address}' cannot be reached")


def test_a_ray_cluster_without_cpus_stops_the_grid_at_start(tmp_path: Path, s3: S3Server) -> None:
    with start_ray_cluster(workers=0) as empty:
        server = _bad_server(tmp_path, s3, RGRID_EXECUTOR=f"ray://{empty.address}")
        _fails_to_start(server, "has no CPUs to run scripts on")


def test_ray_not_installed_names_the_extra(tmp_path: Path, s3: S3Server) -> None:
    shadow = tmp_path / "no-ray" / "ray"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    server = _bad_server(tmp_path, s3, RGRID_EXECUTOR="ray://127.0.0.1:6379")
    server.env["PYTHONPATH"] = str(shadow.parent)
    _fails_to_start(server, "pip install 'rgrid[worker]'")


def test_a_bucket_the_grid_cannot_write_to_stops_it_at_start(tmp_path: Path, s3: S3Server) -> None:
    client = s3.client()
    client.create_bucket(Bucket="readonly-bucket")
    deny = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": "arn:aws:s3:::readonly-bucket/*",
            }
        ],
    }
    client.put_bucket_policy(Bucket="readonly-bucket", Policy=json.dumps(deny))
    server = _bad_server(tmp_path, s3, RGRID_STORAGE_URL="s3://readonly-bucket/blobs")
    _fails_to_start(server, "could not write to the bucket")


# 6. a 1 GiB input and output through a node ---------------------------------------------------

COPY = """\
import shutil, sys
shutil.copyfile(sys.argv[1], "copy.bin")
print("copied")
"""


def _runner_rss_mib() -> dict[int, float]:
    """Resident memory of the Ray worker processes running an attempt now (their process
    title is the task's name: ``ray::rgrid exec_… attempt N``)."""
    found: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if not (entry / "cmdline").read_bytes().startswith(b"ray::rgrid exec_"):
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    found[int(entry.name)] = int(line.split()[1]) / 1024
        except OSError:
            continue
    return found


@pytest.mark.timeout(600)  # 2 GiB through S3 and a node on a 2-core machine
def test_a_gib_in_and_out_through_a_node_with_bounded_runner_memory(
    ray_cli: Cli, workdir: Path
) -> None:
    big = workdir / "big.bin"
    with big.open("wb") as handle:
        block = os.urandom(64 * MiB)
        for i in range(GiB // len(block)):
            handle.write(bytes([i]) + block[1:])  # no two blocks alike
    (workdir / "copy.py").write_text(COPY)
    run = subprocess.Popen(
        [str(RGRID_BIN), "run", "--yes", "copy.py", "big.bin"],
        cwd=workdir,
        env=ray_cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    peaks: dict[int, float] = {}
    while run.poll() is None:
        for pid, rss in _runner_rss_mib().items():
            peaks[pid] = max(peaks.get(pid, 0.0), rss)
        time.sleep(0.1)
    out, err = run.communicate()
    assert run.returncode == 0, err.decode()
    assert out == b"copied\n"
    assert (workdir / "copy.bin").stat().st_size == GiB
    assert digests.of_file(workdir / "copy.bin") == digests.of_file(big)
    assert peaks, "the node's runner was seen"
    print(f"\nnode runner peak RSS: {max(peaks.values()):.0f} MiB")
    assert max(peaks.values()) < 150, peaks
