"""The autoscaler (issue 17) with the ``local`` provider: a real Ray cluster that starts as a head
without CPUs, real ``ray start`` worker nodes the grid creates and deletes as processes, a
billing period of 12 s so whole periods pass during the test, and the same CLI a user types."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.acceptance.conftest import json_of, new_account, wait_for
from tests.conftest import RGRID_BIN, Cli, LiveServer, make_server
from tests.raycluster import RAY_ENV, RayCluster, start_ray_cluster

from rgrid.autoscaler.local import descendants
from rgrid.money import format_micros

pytest.importorskip("ray", reason="the worker extra (make test installs it)")

PERIOD_S = 12.0
DRAIN_BEFORE_END_S = 3.0
TICK_S = 1.0
#: EUR 3.60 an hour: a 12 s period costs 12,000 micros
HOURLY_MICROS = 3_600_000
PERIOD_MICROS = 12_000
#: 12 items of 4 s: about 9 still queued when the first node running one is killed
ITEMS_AFTER_A_KILL = 12
REPO = Path(__file__).resolve().parents[2]

ITEM = """\
import sys, time, pathlib
path = sys.argv[-1]  # the batch's file comes after the script's own arguments
name = pathlib.Path(path).name
print('start', name, flush=True)
time.sleep(float(sys.argv[1]) if len(sys.argv) > 2 else 1.0)
pathlib.Path('out').mkdir(exist_ok=True)
pathlib.Path('out', name).write_text(open(path).read().upper())
print('done', name, flush=True)
"""


def autoscaled_server(tmp: Path, cluster: RayCluster, **settings: str) -> LiveServer:
    server = make_server(
        tmp,
        RGRID_EXECUTOR=f"ray://{cluster.address}",
        RGRID_AUTOSCALE_PROVIDER=settings.pop("provider", "local"),
        RGRID_AUTOSCALE_KIND="cpu1",
        RGRID_AUTOSCALE_MAX_NODES="3",
        RGRID_AUTOSCALE_TICK_S=str(TICK_S),
        RGRID_AUTOSCALE_HORIZON_S="5",
        RGRID_AUTOSCALE_DEFAULT_DURATION_S="2",
        RGRID_AUTOSCALE_DRAIN_BEFORE_END_S=str(DRAIN_BEFORE_END_S),
        RGRID_AUTOSCALE_JOIN_TIMEOUT_S="90",
        RGRID_AUTOSCALE_HEARTBEAT_TIMEOUT_S="30",
        RGRID_BILLING_PERIOD_S=str(PERIOD_S),
        RGRID_HOURLY_PRICE_MICROS=str(HOURLY_MICROS),
        **settings,
    )
    server.env.update(RAY_ENV)
    server.env["PYTHONPATH"] = str(REPO)  # the flaky provider of this test lives in tests/
    return server


def running(server: LiveServer) -> Iterator[LiveServer]:
    """The server while it runs; then whatever node processes its local provider left are
    stopped too (it leaves them running when it stops, so a restart goes on using their
    paid hours)."""
    from rgrid.autoscaler.local import stop_tree

    server.start()
    try:
        yield server
    finally:
        server.stop()
        for record in (server.home / "nodes").glob("*/node.json"):
            stop_tree(int(json.loads(record.read_text())["pid"]))


@pytest.fixture(scope="module")
def head() -> Iterator[RayCluster]:
    with start_ray_cluster(workers=0) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory, head: RayCluster) -> Iterator[LiveServer]:
    yield from running(autoscaled_server(tmp_path_factory.mktemp("autoscaled"), head))


def cli_for(server: LiveServer, workdir: Path) -> Cli:
    admin = Cli(cwd=workdir, env=server.cli_env())
    _, key = new_account(admin)
    return Cli(cwd=workdir, env=server.cli_env(key))


def nodes_of(server: LiveServer) -> list[dict[str, Any]]:
    cli = Cli(cwd=server.home, env=server.cli_env())
    return [w for w in json_of(cli("workers", "--json")) if w["provider"]]


def batch_of(workdir: Path, items: int) -> None:
    data = workdir / "data"
    data.mkdir()
    for index in range(items):
        (data / f"item{index:02d}.txt").write_text(f"item {index}\n")
    (workdir / "job.py").write_text(ITEM)


def all_ended(server: LiveServer) -> list[dict[str, Any]] | None:
    nodes = nodes_of(server)
    return nodes if nodes and all(n["state"] in ("terminated", "dead") for n in nodes) else None


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.timeout(600)
def test_a_batch_brings_nodes_that_leave_at_the_end_of_their_paid_period(
    scaled: LiveServer, workdir: Path
) -> None:
    cli = cli_for(scaled, workdir)
    assert nodes_of(scaled) == []  # the cluster starts with its head only
    batch_of(workdir, 40)
    result = cli("run", "--batch", "data/*.txt", "--parallel", "10", "job.py", timeout=600)
    assert result.returncode == 0, result.stderr
    for index in range(40):
        got = workdir / "outputs" / f"item{index:02d}" / "out" / f"item{index:02d}.txt"
        assert got.read_text() == f"ITEM {index}\n"

    nodes = wait_for(lambda: all_ended(scaled), timeout=3 * PERIOD_S + 30, interval=1)
    assert 1 <= len(nodes) <= 3
    assert all(n["state"] == "terminated" and n["kind"] == "cpu1" for n in nodes), nodes
    items = list(json_of(cli("list", "--json", "--limit", "100"))["data"])
    assert len(items) == 40 and {r["state"] for r in items} == {"succeeded"}
    by_node = {n["name"]: n for n in nodes}
    assert {r["worker"] for r in items} <= set(by_node), "every item ran on an autoscaled node"
    for name, node in by_node.items():
        created, ended = at(node["started_at"]), at(node["ended_at"])
        # never inside a paid period: in its last seconds, just before it ends
        into = (ended - created).total_seconds() % PERIOD_S
        assert PERIOD_S - DRAIN_BEFORE_END_S - 2 * TICK_S <= into < PERIOD_S, (name, into)
        # never while busy: everything that ran there had finished
        ran_there = [r for r in items if r["worker"] == name]
        assert all(at(r["finished_at"]) <= ended for r in ran_there)
    periods = _check_periods(scaled, by_node)
    # paid periods in which nothing ran (if a node waited a whole period) are the grid's idle
    # cost, shown to an admin (tests/integration/store/test_autoscaling_loop.py makes some)
    idle = [p["idle_micros"] for p in periods if p["idle_micros"]]
    shown = Cli(cwd=workdir, env=scaled.cli_env())("cost").stdout
    if idle:
        expected = f"idle: {format_micros(sum(idle))} over {len(idle)} paid billing periods"
        assert expected in shown, shown
    else:
        assert "idle:" not in shown, shown


def _check_periods(server: LiveServer, nodes: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every period of every node closed, back to back from its creation to the period it
    ended in; each one's price is the sum of its executions' shares and its idle cost."""
    admin = {"Authorization": f"Bearer {server.admin_key}"}

    def closed() -> list[dict[str, Any]] | None:
        periods = httpx.get(f"{server.url}/api/v1/billing/periods", headers=admin).json()
        mine = [p for p in periods if p["worker"] in nodes]
        ends: dict[str, datetime] = {}
        for p in mine:
            ends[p["worker"]] = max(ends.get(p["worker"], at(p["end"])), at(p["end"]))
        done = all(name in ends and ends[name] >= at(n["ended_at"]) for name, n in nodes.items())
        return mine if done else None

    periods = wait_for(closed, timeout=PERIOD_S + 15, interval=1)
    for name in nodes:
        own = sorted((p for p in periods if p["worker"] == name), key=lambda p: p["start"])
        start = at(nodes[name]["started_at"])
        for period in own:
            assert at(period["start"]) == start and at(period["end"]) == start + timedelta(
                seconds=PERIOD_S
            )
            start = at(period["end"])
            assert period["price_micros"] == PERIOD_MICROS
            shares = sum(s["micros"] for s in period["shares"])
            assert shares + period["idle_micros"] == period["price_micros"], period
        assert start - timedelta(seconds=PERIOD_S) <= at(nodes[name]["ended_at"]) < start
    return periods


@pytest.mark.timeout(600)
def test_a_node_killed_mid_batch_is_replaced_and_its_items_retried(
    scaled: LiveServer, workdir: Path
) -> None:
    cli = cli_for(scaled, workdir)
    # Enough work queued when the node dies that the nodes left cannot drain it within the
    # horizon (5 s): only then does the queue need a replacement. The killed node is noticed
    # at once (its process is gone at the provider). With 8 items of 3 s, at times only 3
    # were still queued (3 x 3 s on 2 slots: 4.5 s) and rightly no node came.
    batch_of(workdir, ITEMS_AFTER_A_KILL)
    batch = subprocess.Popen(
        [str(RGRID_BIN), "run", "--batch", "data/*.txt", "--parallel", "4", "job.py", "4"],
        cwd=workdir,
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def started() -> tuple[str, list[str]] | None:
            """A node running items that already logged their first line, and those items."""
            listed = json_of(cli("list", "--json", "--limit", "50"))["data"]
            for row in listed:
                if row["state"] == "running" and "start" in cli("logs", row["id"], "--raw").stdout:
                    same = [r["id"] for r in listed if r["worker"] == row["worker"]]
                    return row["worker"], same
            return None

        victim, caught = wait_for(started, timeout=120, interval=0.5)
        killed_at = datetime.now(UTC)
        record = json.loads((scaled.home / "nodes" / victim / "node.json").read_text())
        for pid in [record["pid"], *descendants(record["pid"])]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # the machine is gone: no goodbye
        _, err = batch.communicate(timeout=300)
    finally:
        if batch.poll() is None:
            batch.kill()
    assert batch.returncode == 0, err
    for index in range(ITEMS_AFTER_A_KILL):
        got = workdir / "outputs" / f"item{index:02d}" / "out" / f"item{index:02d}.txt"
        assert got.read_text() == f"ITEM {index}\n"
    nodes = {n["name"]: n for n in nodes_of(scaled)}
    assert nodes[victim]["state"] == "dead"
    assert any(at(n["started_at"]) > killed_at for n in nodes.values()), "a replacement came"
    items = {r["id"]: r for r in json_of(cli("list", "--json", "--limit", "50"))["data"]}
    for execution_id in caught:
        row = items[execution_id]
        assert row["state"] == "succeeded"
        if row["attempt"] > 1:
            assert row["worker"] != victim
    assert any(items[i]["attempt"] > 1 for i in caught), "what ran on the killed node ran again"


@pytest.fixture
def flaky(tmp_path_factory: pytest.TempPathFactory, head: RayCluster) -> Iterator[LiveServer]:
    provider = "tests.acceptance.flaky_provider:FlakyLocalProvider"
    yield from running(autoscaled_server(tmp_path_factory.mktemp("flaky"), head, provider=provider))


@pytest.mark.timeout(300)
def test_a_provider_that_refuses_twice_is_backed_off_from_and_the_reason_shown(
    flaky: LiveServer, workdir: Path
) -> None:
    cli = cli_for(flaky, workdir)
    batch_of(workdir, 4)
    result = cli("run", "--batch", "data/*.txt", "--parallel", "4", "job.py", "0.2", timeout=240)
    assert result.returncode == 0, result.stderr
    shown = cli("workers").stdout
    assert "autoscaler: local, cpu1, 0-3 nodes" in shown
    assert "quota exceeded: the test refuses create 2" in shown
    log = (flaky.home / "server.log").read_text().splitlines()
    refused = [_stamp(line) for line in log if "quota exceeded" in line and "WARNING" in line]
    created = [_stamp(line) for line in log if "node created" in line]
    assert len(refused) == 2 and created
    # backed off: 2 s after the first refusal, 4 s after the second
    assert (refused[1] - refused[0]).total_seconds() >= 2.0
    assert (created[0] - refused[1]).total_seconds() >= 4.0


def _stamp(line: str) -> datetime:
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")


def test_a_bad_autoscaler_configuration_stops_the_grid_at_start(tmp_path: Path) -> None:
    """One end to end; every bad value is in tests/integration/store/test_autoscaling_loop.py."""
    server = make_server(
        tmp_path,
        RGRID_EXECUTOR="ray://127.0.0.1:9",  # never reached: the configuration fails first
        RGRID_AUTOSCALE_PROVIDER="azure",
    )
    server.env.update(RAY_ENV)
    with pytest.raises(RuntimeError, match="server exited"):
        server.start()
    log = (server.home / "server.log").read_text()
    assert "unknown autoscaler provider 'azure'" in log, log[-3000:]
