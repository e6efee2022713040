"""The autoscaler's policy, rule by rule, on a simulated clock (seconds from 0)."""

from __future__ import annotations

import dataclasses

from rgrid.autoscaler.policy import (
    Create,
    Drain,
    NodeKind,
    NodeState,
    NodeView,
    ScalingConfig,
    Terminate,
    Undrain,
    decide,
    typical_duration,
)

KIND = NodeKind("cpu1", slots=1, hourly_price_micros=10_000, billing_period_s=3600.0)
CONFIG = ScalingConfig(
    kind=KIND,
    max_nodes=3,
    horizon_s=300.0,
    join_timeout_s=600.0,
    heartbeat_timeout_s=60.0,
    drain_before_end_s=120.0,
)


def node(
    node_id: str,
    *,
    state: NodeState = NodeState.ACTIVE,
    busy: int = 0,
    created: float = 0.0,
    seen: float | None = 0.0,
    slots: int = 1,
) -> NodeView:
    return NodeView(
        id=node_id,
        state=state,
        slots=slots,
        busy=busy,
        hourly_price_micros=KIND.hourly_price_micros,
        billing_period_s=KIND.billing_period_s,
        created_at=created,
        seen_at=seen,
    )


def creates(plan_actions: tuple[object, ...]) -> int:
    return sum(a.count for a in plan_actions if isinstance(a, Create))


def of(kind: type, plan_actions: tuple[object, ...]) -> list[str]:
    return [a.node_id for a in plan_actions if isinstance(a, kind)]  # type: ignore[attr-defined]


# -- scale up -----------------------------------------------------------------------------------


def test_an_empty_fleet_with_queued_work_gets_a_node() -> None:
    plan = decide(0.0, [], queued_slots=1, durations=[], config=CONFIG)
    assert creates(plan.actions) == 1
    assert "adding 1 node" in plan.status


def test_queued_work_that_drains_within_the_horizon_adds_nothing() -> None:
    # 4 queued x 60 s on 1 busy slot: 240 s, inside the 300 s horizon
    plan = decide(10.0, [node("a", busy=1)], 4, [60.0] * 10, CONFIG)
    assert creates(plan.actions) == 0


def test_queued_work_beyond_the_horizon_adds_what_drains_it_in_time() -> None:
    # 12 queued x 60 s = 720 slot-seconds: 3 slots drain it in 240 s; 1 is there
    plan = decide(10.0, [node("a", busy=1)], 12, [60.0] * 10, CONFIG)
    assert creates(plan.actions) == 2


def test_never_above_the_maximum_node_count() -> None:
    plan = decide(0.0, [], 1000, [600.0], CONFIG)
    assert creates(plan.actions) == 3
    fleet = [node(n, busy=1) for n in "abc"]
    plan = decide(10.0, fleet, 1000, [600.0], CONFIG)
    assert creates(plan.actions) == 0
    assert "at the maximum nodes" in plan.status


def test_never_above_the_maximum_hourly_spend() -> None:
    config = dataclasses.replace(CONFIG, max_nodes=100, max_hourly_micros=25_000)
    plan = decide(0.0, [], 1000, [600.0], config)
    assert creates(plan.actions) == 2  # 2 x 10,000 fits 25,000; a third would not
    plan = decide(0.0, [node("a", busy=1), node("b", busy=1)], 1000, [600.0], config)
    assert creates(plan.actions) == 0
    assert "hourly spend" in plan.status


def test_nodes_still_joining_count_as_capacity() -> None:
    joining = node("a", state=NodeState.PROVISIONING, seen=None, created=0.0)
    plan = decide(30.0, [joining], 1, [], CONFIG)
    assert creates(plan.actions) == 0


def test_no_more_slots_than_executions_waiting() -> None:
    config = dataclasses.replace(CONFIG, max_nodes=100, horizon_s=1.0)
    plan = decide(0.0, [], 5, [3600.0], config)
    assert creates(plan.actions) == 5


def test_a_provider_backing_off_creates_nothing_and_says_so() -> None:
    plan = decide(0.0, [], 5, [], CONFIG, create_blocked_until=8.0)
    assert creates(plan.actions) == 0
    assert "backing off for 8 s" in plan.status
    plan = decide(8.0, [], 5, [], CONFIG, create_blocked_until=8.0)
    assert creates(plan.actions) > 0


def test_min_nodes_are_kept_without_work() -> None:
    config = dataclasses.replace(CONFIG, min_nodes=2)
    assert creates(decide(0.0, [], 0, [], config).actions) == 2
    # at the end of the period an idle node of a fleet at its minimum stays
    fleet = [node("a"), node("b")]
    assert of(Drain, decide(3500.0, fleet, 0, [], config).actions) == []


def test_the_typical_duration_is_the_mean_of_the_latest_runs() -> None:
    config = dataclasses.replace(CONFIG, history=3)
    assert typical_duration([1000.0, 1.0, 2.0, 3.0], config) == 2.0
    assert typical_duration([], config) == config.default_duration_s


# -- scale down ---------------------------------------------------------------------------------


def test_an_idle_node_inside_its_paid_period_is_kept() -> None:
    for now in (10.0, 1800.0, 3479.0, 3600.0 + 10.0):
        plan = decide(now, [node("a", seen=now)], 0, [], CONFIG)
        assert plan.actions == (), now


def test_an_idle_node_is_drained_just_before_its_period_ends_then_terminated() -> None:
    plan = decide(3490.0, [node("a", seen=3490.0)], 0, [], CONFIG)
    assert of(Drain, plan.actions) == ["a"]
    draining = node("a", state=NodeState.DRAINING, seen=3495.0)
    plan = decide(3495.0, [draining], 0, [], CONFIG)
    assert of(Terminate, plan.actions) == ["a"]
    assert not any(a.dead for a in plan.actions if isinstance(a, Terminate))


def test_the_period_end_counts_from_creation_in_later_hours_too() -> None:
    # created at 100 s: its periods end at 3700, 7300, ...
    late = node("a", created=100.0, seen=7200.0)
    assert of(Drain, decide(7200.0, [late], 0, [], CONFIG).actions) == ["a"]
    assert of(Drain, decide(7000.0, [late], 0, [], CONFIG).actions) == []


def test_a_busy_node_is_never_drained_nor_terminated() -> None:
    for now in (3490.0, 3599.0):
        plan = decide(now, [node("a", busy=1, seen=now)], 0, [], CONFIG)
        assert plan.actions == ()
    busy_draining = node("a", state=NodeState.DRAINING, busy=1, seen=3590.0)
    assert of(Terminate, decide(3590.0, [busy_draining], 0, [], CONFIG).actions) == []


def test_an_idle_node_stays_while_work_waits_for_it() -> None:
    fleet = [node("a", seen=3490.0)]
    plan = decide(3490.0, fleet, 1, [10.0], CONFIG)
    assert of(Drain, plan.actions) == []


def test_a_draining_node_gets_work_again_when_the_queue_needs_it() -> None:
    draining = node("a", state=NodeState.DRAINING, seen=3500.0)
    plan = decide(3500.0, [draining], 3, [10.0], CONFIG)
    assert of(Undrain, plan.actions) == ["a"]
    assert of(Terminate, plan.actions) == []


def test_a_draining_node_in_a_new_period_is_kept_paid_for() -> None:
    # still busy when its period ended: it is paid for another hour, so it works on
    draining = node("a", state=NodeState.DRAINING, busy=1, seen=3610.0)
    plan = decide(3610.0, [draining], 0, [], CONFIG)
    assert of(Undrain, plan.actions) == ["a"]


def test_of_two_idle_nodes_only_the_one_whose_period_ends_goes() -> None:
    fleet = [node("early", created=0.0, seen=3500.0), node("late", created=1000.0, seen=3500.0)]
    plan = decide(3500.0, fleet, 0, [], CONFIG)
    assert of(Drain, plan.actions) == ["early"]


# -- dead nodes ---------------------------------------------------------------------------------


def test_a_node_that_does_not_join_in_time_is_dead_and_replaced() -> None:
    joining = node("a", state=NodeState.PROVISIONING, seen=None, created=0.0)
    assert decide(600.0, [joining], 1, [], CONFIG).actions == ()
    plan = decide(601.0, [joining], 1, [], CONFIG)
    assert of(Terminate, plan.actions) == ["a"]
    assert all(a.dead for a in plan.actions if isinstance(a, Terminate))
    assert creates(plan.actions) == 1  # its place is taken at once


def test_a_node_that_stops_heartbeating_is_dead_and_replaced() -> None:
    gone = node("a", busy=1, seen=100.0)
    assert of(Terminate, decide(160.0, [gone], 0, [], CONFIG).actions) == []
    plan = decide(161.0, [gone], 1, [], CONFIG)
    (terminate,) = [a for a in plan.actions if isinstance(a, Terminate)]
    assert terminate.dead and "not seen alive for 61 s" in terminate.reason
    assert creates(plan.actions) == 1


def test_a_dead_node_frees_its_place_under_the_maximum() -> None:
    fleet = [
        node("a", busy=1, seen=0.0),
        node("b", busy=1, seen=100.0),
        node("c", busy=1, seen=100.0),
    ]
    plan = decide(100.0, fleet, 10, [600.0], CONFIG)
    assert of(Terminate, plan.actions) == ["a"]
    assert creates(plan.actions) == 1


def test_a_fleet_at_its_minimum_keeps_a_node_while_another_is_going() -> None:
    config = dataclasses.replace(CONFIG, min_nodes=1)
    going = node("a", state=NodeState.DRAINING, created=0.0, seen=3530.0)
    other = node("b", created=10.0, seen=3530.0)
    plan = decide(3530.0, [going, other], 0, [], config)
    assert of(Terminate, plan.actions) == ["a"]
    assert of(Drain, plan.actions) == []


def test_a_node_in_the_cluster_that_never_gets_work_is_dead_at_the_join_timeout() -> None:
    # seen alive (its probe ran) but not usable (no bubblewrap): it stays provisioning
    unusable = node("a", state=NodeState.PROVISIONING, created=0.0, seen=590.0)
    assert of(Terminate, decide(590.0, [unusable], 1, [], CONFIG).actions) == []
    assert of(Terminate, decide(601.0, [unusable], 1, [], CONFIG).actions) == ["a"]
