"""Acceptance (issue 9, first part): every execution has a cost in integer micros — its run time
at its worker's hourly price shared by the worker's slots — provisional while running, shown by
`rgrid status` and the `rgrid run` summary; a cache hit costs nothing."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from tests.acceptance.conftest import run_id, status_of
from tests.conftest import Cli, LiveServer, make_server

PRICE = 3_600_000_000  # micros an hour: one micro per microsecond on a 1-slot worker
SLOTS = 4


@pytest.fixture
def priced(tmp_path: Path) -> Iterator[LiveServer]:
    server = make_server(tmp_path, RGRID_HOURLY_PRICE_MICROS=str(PRICE), RGRID_SLOTS=str(SLOTS))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def micros_between(start: str, end: str) -> int:
    delta = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def test_cost_is_run_time_times_price_over_slots_and_a_hit_is_free(
    priced: LiveServer, tmp_path: Path
) -> None:
    workdir = tmp_path / "project"
    workdir.mkdir()
    (workdir / "nap.py").write_text("import time\ntime.sleep(1.5)\nprint('rested')\n")
    cli = Cli(cwd=workdir, env=priced.cli_env())

    started = cli("run", "--detach", "nap.py")
    execution_id = started.stdout.strip()
    deadline = time.monotonic() + 30
    while (running := status_of(cli, execution_id))["state"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)
    running = status_of(cli, execution_id)
    assert running["cost_final"] is False and running["cost_micros"] > 0  # accruing
    assert "(provisional)" in cli("status", execution_id).stdout

    done = cli("wait", execution_id)
    assert done.returncode == 0, done.stderr
    final = status_of(cli, execution_id)
    expected = (
        micros_between(final["started_at"], final["finished_at"]) * PRICE // (3_600_000_000 * SLOTS)
    )
    assert final["cost_micros"] == expected  # exact: integers all the way
    assert final["cost_micros"] >= running["cost_micros"]
    shown = f"€{expected // 1_000_000}.{expected % 1_000_000:06d}"
    assert f"cost       {shown} (provisional)" in cli("status", execution_id).stdout

    ran = cli("run", "--no-cache", "nap.py")
    assert ran.returncode == 0
    cost = status_of(cli, run_id(ran))["cost_micros"]
    assert f"{run_id(ran)} succeeded in" in ran.stderr and f"€0.{cost:06d}" in ran.stderr

    hit = cli("run", "nap.py")
    hit_status = status_of(cli, run_id(hit))
    assert hit_status["cached_from"] is not None
    assert (hit_status["cost_micros"], hit_status["cost_final"]) == (0, True)
    assert "€0.000000" in hit.stderr


def overlap_us(a_start: str, a_end: str, b_start: str, b_end: str) -> int:
    start = max(datetime.fromisoformat(a_start), datetime.fromisoformat(b_start))
    end = min(datetime.fromisoformat(a_end), datetime.fromisoformat(b_end))
    return max(0, micros_between(start.isoformat(), end.isoformat()))


def largest_remainder(price: int, runs: dict[str, int]) -> dict[str, int]:
    """An independent statement of the split the SPEC asks for."""
    from fractions import Fraction

    total = sum(runs.values())
    exact = {k: Fraction(price * v, total) for k, v in runs.items()}
    shares = {k: int(q) for k, q in exact.items()}
    left = price - sum(shares.values())
    for k in sorted(runs, key=lambda k: (-(exact[k] - int(exact[k])), k))[:left]:
        shares[k] += 1
    return shares


def test_billing_periods_split_exactly_and_cost_totals_match(tmp_path: Path) -> None:
    server = make_server(
        tmp_path,
        RGRID_HOURLY_PRICE_MICROS=str(PRICE),
        RGRID_SLOTS="2",
        RGRID_BILLING_PERIOD_S="3",
    )
    server.start()
    try:
        workdir = tmp_path / "project"
        workdir.mkdir()
        cli = Cli(cwd=workdir, env=server.cli_env())
        ids = []
        for seconds in (0.4, 0.8, 1.2):  # three scripts of known durations, two slots
            (workdir / f"s{seconds}.py").write_text(f"import time\ntime.sleep({seconds})\n")
            ids.append(cli("run", "--detach", f"s{seconds}.py").stdout.strip())
        deadline = time.monotonic() + 30
        while not all(status_of(cli, i)["cost_final"] for i in ids):
            assert time.monotonic() < deadline, [status_of(cli, i) for i in ids]
            time.sleep(0.25)
        executions = {i: status_of(cli, i) for i in ids}
        periods = httpx.get(
            f"{server.url}/api/v1/billing/periods",
            headers={"Authorization": f"Bearer {server.admin_key}"},
        ).json()
        period_price = PRICE * 3 // 3600  # 3 s of the hourly price
        charged = dict.fromkeys(ids, 0)
        for period in periods:
            assert period["price_micros"] == period_price
            runs = {
                i: overlap_us(e["started_at"], e["finished_at"], period["start"], period["end"])
                for i, e in executions.items()
            }
            runs = {i: us for i, us in runs.items() if us > 0}
            shares = {s["execution_id"]: s for s in period["shares"]}
            assert {i: s["run_us"] for i, s in shares.items()} == runs
            if runs:
                expected = largest_remainder(period_price, runs)
                assert {i: s["micros"] for i, s in shares.items()} == expected
                assert period["idle_micros"] == 0
            else:
                assert period["idle_micros"] == period_price  # idle: charged to no one
            for i, share in shares.items():
                charged[i] += share["micros"]
        assert {i: e["cost_micros"] for i, e in executions.items()} == charged

        # the worker's periods go on closing, idle, while the test reads: the reports are asked
        # up to the end of the periods read above, so they count the same ones
        until = max(p["end"] for p in periods)
        report = cli("cost", "--json", "--until", until)
        assert report.returncode == 0, report.stderr
        total = json.loads(report.stdout)["total"]
        billed = sum(p["price_micros"] - p["idle_micros"] for p in periods)
        assert total["cost_micros"] == billed == sum(charged.values())
        assert total["executions"] == 3
        table = cli("cost", "--by", "batch", "--until", until).stdout.splitlines()
        assert table[0].split() == ["BATCH", "EXECUTIONS", "COMPUTE", "COST"]
        # a period in which nothing ran (the scripts started late on a busy machine) is told
        # on a line of its own after the total
        idle = [p for p in periods if p["idle_micros"]]
        footer = table[-2:] if idle else table[-1:]
        assert footer[0].split()[:2] == ["total", "3"], table
        if idle:
            assert footer[1].startswith("idle: ") and f"over {len(idle)} paid" in footer[1], table
    finally:
        server.stop()


def test_bad_cost_options_are_clear_errors(cli: Cli) -> None:
    after = cli("cost", "--since", "2026-02-01", "--until", "2026-01-01")
    assert after.returncode == 1 and "--since must be before --until" in after.stderr
    unknown = cli("cost", "--by", "color")
    assert unknown.returncode == 1 and "cannot group by 'color'" in unknown.stderr
    garbage = cli("cost", "--since", "yesterday-ish")
    assert garbage.returncode == 2 and "is not a date" in garbage.stderr


def test_a_spending_limit_warns_then_refuses_and_removing_it_lets_runs_through(
    priced: LiveServer, tmp_path: Path
) -> None:
    workdir = tmp_path / "project"
    workdir.mkdir()
    (workdir / "work.py").write_text("import time\ntime.sleep(0.3)\nprint('worked')\n")
    cli = Cli(cwd=workdir, env=priced.cli_env())
    assert cli("run", "work.py").returncode == 0
    spent = json.loads(cli("cost", "--json").stdout)["total"]["cost_micros"]
    assert spent > 0
    just_above = spent + 1
    amount = f"{just_above // 1_000_000}.{just_above % 1_000_000:06d}"
    shown = cli("cost", "limit", "set", amount)
    assert shown.returncode == 0, shown.stderr
    assert f"limit €{amount} per month; spent €0.{spent:06d}" in shown.stdout

    warned = cli("run", "--no-cache", "work.py")  # at >= 80 %: runs, with a warning
    assert warned.returncode == 0, warned.stderr
    assert re.search(r"warning: spent €0\.\d{6} of your €\S+ monthly limit \(\d+%\)", warned.stderr)

    refused = cli("run", "--no-cache", "work.py")
    assert refused.returncode == 1
    assert "error: spending limit reached: spent €" in refused.stderr
    answer = httpx.post(
        f"{priced.url}/api/v1/executions",
        json={"script": "work.py", "files": []},
        headers={"Authorization": f"Bearer {priced.admin_key}"},
    )
    assert answer.status_code == 402
    assert answer.json()["error"]["code"] == "SPENDING_LIMIT_EXCEEDED"

    assert cli("cost", "limit", "remove").returncode == 0
    assert cli("run", "--no-cache", "work.py").returncode == 0
    assert cli("cost", "limit", "show").returncode == 1  # none set any more


def test_bad_spending_limits_are_clear_errors(cli: Cli) -> None:
    for amount, message in (
        ("-3", "must be above 0"),
        ("abc", "is not an amount"),
        ("0", "must be above 0"),
        ("1.0000001", "more than 6 decimals"),
    ):
        result = cli("cost", "limit", "set", amount)
        assert result.returncode == 1 and message in result.stderr, (amount, result.stderr)
    period = cli("cost", "limit", "set", "5", "--period", "year")
    assert period.returncode == 2 and "year" in period.stderr


def test_estimate_from_five_earlier_runs_and_the_default_without_history(
    priced: LiveServer, tmp_path: Path
) -> None:
    workdir = tmp_path / "project"
    (workdir / "in").mkdir(parents=True)
    (workdir / "sleeper.py").write_text("import sys, time\ntime.sleep(1)\nprint(sys.argv[1])\n")
    for i in range(5):
        (workdir / "in" / f"{i}.txt").write_text(str(i))
    cli = Cli(cwd=workdir, env=priced.cli_env())
    ran = cli("run", "--batch", "in/*.txt", "--parallel", "5", "--json", "sleeper.py")
    assert ran.returncode == 0, ran.stderr
    ids = [e["id"] for e in map(json.loads, ran.stdout.splitlines()) if e["event"] == "item"]
    runs = sorted(
        micros_between(s["started_at"], s["finished_at"])
        for s in (status_of(cli, i) for i in dict.fromkeys(ids))
    )
    assert len(runs) == 5
    median, p90 = runs[2], runs[4]  # nearest rank: ceil(0.9 * 5) = 5th

    def money(micros: int) -> str:
        return f"€{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def seconds(us: int) -> str:
        return f"{us / 1e6:.1f}s"

    result = cli("estimate", "sleeper.py", "--files", "100", "--parallel", "4")
    assert result.returncode == 0, result.stderr
    cost = lambda us: money(us * 100 * PRICE // (3_600_000_000 * SLOTS))  # noqa: E731
    assert result.stdout.splitlines() == [
        "estimate: 100 item(s) of sleeper.py",
        f"  per item: median {seconds(median)}, p90 {seconds(p90)}",
        f"  cost:     {cost(median)} (p90 {cost(p90)}) at {money(PRICE)}/h for {SLOTS} slot(s)",
        f"  wall:     {seconds_or_minutes(25 * median)} at --parallel 4 "
        f"(p90 {seconds_or_minutes(25 * p90)})",
        "  from 5 earlier run(s) of this script",
    ]
    globbed = cli("estimate", "sleeper.py", "--batch", "in/*.txt")
    assert "estimate: 5 item(s) of sleeper.py" in globbed.stdout

    (workdir / "other.py").write_text("print('never run')\n")
    fresh = cli("estimate", "other.py", "--files", "3")
    assert fresh.returncode == 0
    assert "no earlier run of other.py: using the default of 10.0s an item" in fresh.stdout


def seconds_or_minutes(us: int) -> str:
    seconds = us / 1e6
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def test_a_run_too_short_to_cost_a_micro_says_so_rather_than_zero(
    account_cli: Cli, workdir: Path
) -> None:
    (workdir / "quick.py").write_text("print('done')\n")
    # once first, so that building the grid's plain environment is not part of the run timed
    assert account_cli("run", "--no-cache", "quick.py").returncode == 0
    ran = account_cli("run", "--no-cache", "quick.py")  # the default €0.008 an hour
    assert ran.returncode == 0, ran.stderr
    assert status_of(account_cli, run_id(ran))["cost_micros"] == 0  # well under one micro
    assert ran.stderr.rstrip().endswith(", < €0.000001")
    assert "< €0.000001 (provisional)" in account_cli("status", run_id(ran)).stdout


def test_a_batch_too_short_to_cost_a_micro_says_so_as_a_single_run_does(tmp_path: Path) -> None:
    """Issue 14, item 9: the batch summary formats its cost as the single-run summary does."""
    server = make_server(tmp_path, RGRID_HOURLY_PRICE_MICROS="1")  # a micro an hour: 0 each
    server.start()
    try:
        workdir = tmp_path / "project"
        (workdir / "in").mkdir(parents=True)
        for name in ("a", "b"):
            (workdir / "in" / f"{name}.txt").write_text(name)
        (workdir / "quick.py").write_text("print('done')\n")
        cli = Cli(workdir, server.cli_env())

        ran = cli("run", "--batch", "in/*.txt", "quick.py")

        assert ran.returncode == 0, ran.stderr
        summary = next(line for line in ran.stderr.splitlines() if "succeeded," in line)
        assert summary.endswith("cost < €0.000001"), summary
        single = cli("run", "quick.py")
        assert single.stderr.rstrip().endswith(", < €0.000001"), single.stderr
    finally:
        server.stop()
