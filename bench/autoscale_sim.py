"""bench/autoscale_sim: what the billing-hour autoscaler policy (``policy.decide``) costs and how
long work waits under it, against a Ray-like idle timeout and a static fleet, on one synthetic
day of work (``simulator.synthetic_day``), simulated (``rgrid.autoscaler.simulator``).

Goals: billing-hour >= 20 % cheaper than the idle timeout, its p95 queue wait no worse, and a
whole day simulated in <= 60 s. Usage: .venv/bin/python bench/autoscale_sim.py
[--executions 100000] [--seed 1]
"""

from __future__ import annotations

import argparse
import math
import os
import time

from rgrid.autoscaler import simulator
from rgrid.autoscaler.policy import NodeKind, ScalingConfig, decide

#: a 2-vCPU shared cloud server billed by the started hour (Hetzner's small ones cost about this)
KIND = NodeKind("2vcpu", slots=2, hourly_price_micros=7_200)
CONFIG = ScalingConfig(kind=KIND, max_nodes=1_000, horizon_s=300.0, drain_before_end_s=120.0)
STARTUP_S, TICK_S = 90.0, 30.0
#: the static fleet carries the day's mean load this many times over
STATIC_HEADROOM = 2.0


def row(name: str, r: simulator.SimResult) -> str:
    return (
        f"{name:<22} {r.node_hours:>9.0f} {r.cost_micros / 1e6:>9.2f} {r.wait_p50_s:>7.0f} "
        f"{r.wait_p95_s:>7.0f} {r.utilisation * 100:>6.1f} {r.peak_nodes:>6} "
        f"{len(r.nodes):>7} {r.jobs_run:>8} {r.violations:>5} {r.wall_s:>7.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--executions", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    started = time.perf_counter()
    trace = simulator.synthetic_day(args.seed, args.executions)
    made_s = time.perf_counter() - started
    work_s = sum(job.duration_s for job in trace)
    static_n = math.ceil(STATIC_HEADROOM * work_s / simulator.DAY_S / KIND.slots)
    policies = {
        "billing-hour (decide)": decide,
        "idle-timeout 300 s": simulator.idle_timeout_policy(300.0),
        f"static {static_n} nodes": simulator.static_fleet(static_n),
    }
    results = {
        name: simulator.simulate(trace, CONFIG, policy, startup_s=STARTUP_S, tick_s=TICK_S)
        for name, policy in policies.items()
    }
    print(
        f"autoscale_sim: {len(trace):,} executions (seed {args.seed}, made in {made_s:.2f} s), "
        f"{work_s / 3600:,.0f} slot-hours of work, mean run {work_s / max(len(trace), 1):.0f} s; "
        f"{os.cpu_count()} cores"
    )
    print(
        f"node {KIND.name}: {KIND.slots} slots, EUR {KIND.hourly_price_micros / 1e6:.4f}/h, "
        f"hourly periods; max_nodes {CONFIG.max_nodes}, start-up {STARTUP_S:.0f} s, "
        f"tick {TICK_S:.0f} s, horizon {CONFIG.horizon_s:.0f} s, "
        f"drain_before_end {CONFIG.drain_before_end_s:.0f} s"
    )
    print(
        f"{'policy':<22} {'node-h':>9} {'EUR':>9} {'p50 s':>7} {'p95 s':>7} {'util%':>6} "
        f"{'peak':>6} {'created':>7} {'runs':>8} {'viol':>5} {'sim s':>7}"
    )
    for name, result in results.items():
        print(row(name, result))
    billing, idle = results["billing-hour (decide)"], results["idle-timeout 300 s"]
    saving = 1 - billing.cost_micros / idle.cost_micros if idle.cost_micros else 0.0
    print(f"\nbilling-hour vs idle-timeout cost: {saving * 100:.1f} % cheaper (goal >= 20 %)")
    print(
        f"billing-hour vs idle-timeout p95 wait: {billing.wait_p95_s:.0f} s vs "
        f"{idle.wait_p95_s:.0f} s, ratio {billing.wait_p95_s / max(idle.wait_p95_s, 1e-9):.2f} "
        f"(goal <= 1.00)"
    )
    slowest = max(r.wall_s for r in results.values())
    print(
        f"whole-day sim time: billing-hour {billing.wall_s:.2f} s, slowest policy "
        f"{slowest:.2f} s (goal <= 60 s)"
    )


if __name__ == "__main__":
    main()
