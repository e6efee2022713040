"""Acceptance: workers are data (issue 15). A grid priced at €0.72 an hour for its 3 slots shows
its worker — the one its executions name — with that price and its slots in `rgrid workers` and
in /metrics; a run's cost is its run time at that price; a bad RGRID_EXECUTOR stops the grid
from starting with a clear error."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.acceptance.conftest import json_of, run_id, status_of
from tests.conftest import RGRID_BIN, Cli, LiveServer, make_server

PRICE = 720_000  # micros an hour


@pytest.fixture
def priced(tmp_path: Path) -> Iterator[LiveServer]:
    server = make_server(
        tmp_path, RGRID_SLOTS="3", RGRID_HOURLY_PRICE_MICROS=str(PRICE), RGRID_EXECUTOR="local"
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_the_workers_table_is_what_workers_metrics_and_costs_read(
    priced: LiveServer, tmp_path: Path
) -> None:
    workdir = tmp_path / "project"
    workdir.mkdir()
    (workdir / "main.py").write_text("import time\ntime.sleep(0.3)\nprint('done')\n")
    cli = Cli(cwd=workdir, env=priced.cli_env())

    result = cli("run", "main.py")
    (worker,) = json_of(cli("workers", "--json"))

    assert result.returncode == 0, result.stderr
    status = status_of(cli, run_id(result))
    assert worker["name"] == status["worker"]  # the worker its executions name
    assert (worker["state"], worker["slots"], worker["busy"]) == ("active", 3, 0)
    assert worker["hourly_price_micros"] == PRICE and worker["executor"] == "local"
    # 0.3 s and more at €0.72/h for one of 3 slots: 20 micros at least
    assert status["cost_micros"] >= 20, status
    table = cli("workers").stdout
    assert worker["name"] in table and "€0.720000" in table and "0/3" in table
    metrics = httpx.get(
        f"{priced.url}/metrics", headers={"Authorization": f"Bearer {priced.admin_key}"}
    ).text
    assert f'rgrid_worker_slots{{worker="{worker["name"]}"}} 3.0' in metrics
    assert f'rgrid_worker_busy{{worker="{worker["name"]}"}} 0.0' in metrics


def test_an_unknown_executor_stops_the_grid_with_a_clear_error(tmp_path: Path) -> None:
    server = make_server(tmp_path, RGRID_EXECUTOR="carrier-pigeon://loft")
    done = subprocess.run(
        [str(RGRID_BIN), "server", "run", "--port", str(server.port)],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "unsupported executor 'carrier-pigeon://loft'" in done.stderr
