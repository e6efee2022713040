"""The autoscaler simulator: the billing-hour policy and the baselines over small traces, with
timings worked out by hand (a 90 s start-up, a 30 s tick, hourly periods)."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Sequence

from rgrid.autoscaler import simulator
from rgrid.autoscaler.policy import (
    NodeKind,
    NodeState,
    NodeView,
    Plan,
    ScalingConfig,
    Terminate,
    decide,
)
from rgrid.autoscaler.simulator import Job, SimResult, simulate

PRICE = 7_200
KIND = NodeKind("test-2", slots=2, hourly_price_micros=PRICE)


CONFIG = ScalingConfig(kind=KIND, max_nodes=4, horizon_s=300.0)


def burst(at: float, count: int, duration_s: float) -> list[Job]:
    return [Job(at, duration_s) for _ in range(count)]


def paid_periods(result: SimResult) -> list[int]:
    return [
        math.floor((r.ended_at - r.created_at) / KIND.billing_period_s) + 1 for r in result.nodes
    ]


def test_the_billing_hour_policy_runs_everything_within_bounds_and_bills_started_periods() -> None:
    trace = burst(0.0, 40, 60.0) + burst(2_000.0, 10, 30.0) + burst(5_000.0, 25, 100.0)
    result = simulate(trace, CONFIG)
    assert result.jobs_run == len(trace)
    assert result.violations == 0  # no busy node terminated
    assert 0 < result.peak_nodes <= 4
    assert all(r.state is NodeState.TERMINATED for r in result.nodes)  # wound down to nothing
    assert [r.periods for r in result.nodes] == paid_periods(result)
    assert result.cost_micros == sum(paid_periods(result)) * PRICE
    assert result.node_hours == sum(paid_periods(result))
    busy_s = 40 * 60.0 + 10 * 30.0 + 25 * 100.0
    assert math.isclose(result.utilisation, busy_s / (result.node_hours * 3600 * KIND.slots))


def test_a_node_is_kept_for_its_paid_hour_then_drained_and_terminated_before_the_next() -> None:
    # created at 0, joins at 90; drained at 3480 (120 s before its period ends), gone at 3510
    result = simulate([Job(0.0, 60.0), Job(1_000.0, 60.0)], CONFIG)
    assert result.wait_max_s == 90.0  # the first job waited for the node to start
    [node] = result.nodes
    assert (node.created_at, node.ended_at, node.periods) == (0.0, 3_510.0, 1)
    assert result.cost_micros == PRICE


def test_the_idle_timeout_terminates_an_idle_node_after_the_timeout_and_pays_again() -> None:
    # the job runs 90-150; the tick at 150 sees the node idle, the one at 450 ends it; the second
    # job needs a new node (and a new period)
    trace = [Job(0.0, 60.0), Job(1_000.0, 60.0)]
    result = simulate(trace, CONFIG, simulator.idle_timeout_policy(idle_s=300.0))
    first, second = result.nodes
    assert (first.created_at, first.ended_at) == (0.0, 450.0)
    assert second.created_at == 1_020.0  # the next tick after the submission
    assert second.ended_at - (second.created_at + 90.0 + 60.0) == 300.0
    assert result.violations == 0
    assert result.cost_micros == 2 * PRICE


def test_the_static_fleet_creates_its_nodes_once_and_never_terminates_one() -> None:
    trace = burst(0.0, 30, 120.0) + burst(4_000.0, 5, 10.0)
    result = simulate(trace, dataclasses.replace(CONFIG, max_nodes=1), simulator.static_fleet(3))
    assert result.jobs_run == len(trace)
    assert [r.created_at for r in result.nodes] == [0.0, 0.0, 0.0]
    assert all(r.state is NodeState.ACTIVE and r.ended_at == result.end_s for r in result.nodes)
    assert result.end_s >= 4_000.0 + simulator.WIND_DOWN_S  # billed to the end of the wind-down
    assert result.cost_micros == sum(paid_periods(result)) * PRICE


def test_terminating_a_busy_node_is_a_violation_and_its_work_runs_again() -> None:
    struck: set[str] = set()

    def terminate_busy_once(
        now: float,
        nodes: Sequence[NodeView],
        queued_slots: int,
        durations: Sequence[float],
        config: ScalingConfig,
        *,
        create_blocked_until: float | None = None,
    ) -> Plan:
        plan = decide(now, nodes, queued_slots, durations, config)
        busy = [n.id for n in nodes if n.busy and not struck]
        struck.update(busy)
        return Plan(plan.actions + tuple(Terminate(i, "test") for i in busy), plan.status)

    result = simulate(burst(0.0, 4, 100.0), CONFIG, terminate_busy_once)
    assert result.violations >= 1
    assert result.jobs_run == 4
    assert result.wait_max_s > 100.0  # the struck ones started again later


def test_the_synthetic_day_is_reproducible_and_bounded() -> None:
    trace = simulator.synthetic_day(seed=7, executions=20_000)
    assert trace == simulator.synthetic_day(seed=7, executions=20_000)
    assert trace != simulator.synthetic_day(seed=8, executions=20_000)
    assert len(trace) == 20_000
    assert [j.submit_s for j in trace] == sorted(j.submit_s for j in trace)
    durations = [j.duration_s for j in trace]
    assert simulator.DURATION_MIN_S <= min(durations) and max(durations) <= 1_800.0
    assert simulator.synthetic_day(seed=1, executions=5) == simulator.synthetic_day(1, 5)
    assert len(simulator.synthetic_day(seed=1, executions=5)) == 5


def test_batches_arrive_more_by_day_than_by_night() -> None:
    rng = random.Random(3)
    hours = [simulator._batch_start(rng) // 3600 for _ in range(4_000)]
    afternoon = sum(12 <= h < 16 for h in hours)
    night = sum(0 <= h < 4 for h in hours)
    assert afternoon > 3 * night
