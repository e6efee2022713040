"""A discrete-event simulator of the fleet under an autoscaler policy (SPEC §10): the fake clock,
nodes, queue and bill that ``policy.decide`` (or a baseline) is run against over a trace of
work, the baselines themselves, and a synthetic day of work. No I/O; seeded, so reproducible."""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import math
import random
import time
from collections import deque
from collections.abc import Sequence
from typing import Protocol

from rgrid.autoscaler import policy as rules
from rgrid.autoscaler.policy import NodeState

#: from a node's creation until it joins the cluster and takes work; between two policy runs
STARTUP_S, TICK_S = 90.0, 30.0
#: the fleet's wind-down after the last execution ended; the latest stop after the last submission
WIND_DOWN_S, GIVE_UP_S = 3600.0, 86_400.0
IDLE_TIMEOUT_S = 300.0  # Ray's default ``idle_timeout_minutes`` (5)

# the synthetic day: batch sizes, how fast a batch reaches the queue (``rgrid batch``), a batch's
# median run time (log-uniform) and spread (sigma of the log), the bounds of one run time, and
# the rate of batches at night relative to the afternoon peak
DAY_S = 86_400.0
BATCH_MIN, BATCH_MAX = 10, 10_000
SUBMIT_PER_S = 200.0
MEDIAN_RANGE_S, SIGMA_RANGE = (20.0, 120.0), (0.3, 1.0)
DURATION_MIN_S, DURATION_MAX_S = 1.0, 1800.0
NIGHT_WEIGHT = 0.15

# event kinds; at one instant they are handled in this order: slots free up and nodes join
# before new work queues, and the policy sees the state after all of them
_END, _JOIN, _SUBMIT, _TICK = 0, 1, 2, 3


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    """One execution of the trace: one CPU slot for ``duration_s`` from when it starts."""

    submit_s: float
    duration_s: float


class Policy(Protocol):
    """What the simulator runs at each tick: ``policy.decide``'s signature and contract."""

    def __call__(
        self,
        now: float,
        nodes: Sequence[rules.NodeView],
        queued_slots: int,
        durations: Sequence[float],
        config: rules.ScalingConfig,
        *,
        create_blocked_until: float | None = None,
    ) -> rules.Plan: ...


@dataclasses.dataclass(frozen=True)
class NodeRecord:
    """One node's life and bill: ``periods`` billing periods started between ``created_at`` and
    ``ended_at`` (terminated then, or still live when the simulation stopped)."""

    id: str
    created_at: float
    ended_at: float
    periods: int
    state: NodeState


@dataclasses.dataclass(frozen=True)
class SimResult:
    """What a policy cost and how well the queue was served over the trace. Waits are from
    submission to the (last) start of the execution, over the executions that started."""

    node_hours: float
    cost_micros: int
    wait_p50_s: float
    wait_p95_s: float
    wait_max_s: float
    #: busy slot-seconds over paid slot-seconds
    utilisation: float
    peak_nodes: int
    jobs_run: int
    #: terminations of a node with executions running (those were queued again, at the front)
    violations: int
    #: the simulated instant the simulation stopped
    end_s: float
    wall_s: float
    nodes: tuple[NodeRecord, ...]


def simulate(
    trace: Sequence[Job],
    config: rules.ScalingConfig,
    policy: Policy = rules.decide,
    *,
    startup_s: float = STARTUP_S,
    tick_s: float = TICK_S,
) -> SimResult:
    """Run ``policy`` every ``tick_s`` from time 0 over ``trace`` (sorted or not) on a fleet of
    ``config.kind`` nodes that join ``startup_s`` after they are created.

    Executions queue FIFO and start on an active node with a free slot (the oldest such node
    first) at every event. Joined nodes are seen alive at every tick; creating never fails. The
    simulation stops once every execution has run and the fleet is empty or ``WIND_DOWN_S``
    passed since the last one ended (or ``GIVE_UP_S`` after the last submission)."""
    started = time.perf_counter()
    sim = _Sim(config, policy, startup_s, tick_s)
    sim.run(trace)
    return sim.result(time.perf_counter() - started)


@dataclasses.dataclass(slots=True, eq=False)
class _Node:
    seq: int
    id: str
    created_at: float
    state: NodeState = NodeState.PROVISIONING
    #: joined: seen alive at every tick since; in_free: its seq is in the heap of free nodes
    joined: bool = False
    in_free: bool = False
    #: the run ids of what runs there
    running: set[int] = dataclasses.field(default_factory=set)


class _Sim:
    """One simulation: the event heap, the queue, the fleet and the tallies (``simulate``)."""

    def __init__(
        self, config: rules.ScalingConfig, policy: Policy, startup_s: float, tick_s: float
    ) -> None:
        self.config, self.policy, self.kind = config, policy, config.kind
        self.startup_s, self.tick_s = startup_s, tick_s
        # (time, kind, seq, payload): the payload is a job index, a node seq or a run id
        self.events: list[tuple[float, int, int, int]] = []
        self.queue: deque[int] = deque()
        self.nodes: list[_Node] = []  # every node ever created, by seq
        self.live: dict[str, _Node] = {}
        #: seqs of active nodes that may have a free slot (stale entries are dropped lazily)
        self.free: list[int] = []
        #: run id -> (node, job index, start)
        self.runs: dict[int, tuple[_Node, int, float]] = {}
        self.durations: list[float] = []
        self.run_ids = itertools.count()
        self.done = self.peak = self.violations = 0
        self.last_done = self.busy_slot_s = self.end = 0.0
        self.records: list[NodeRecord] = []

    def push(self, at: float, kind: int, payload: int) -> None:
        self.seq += 1
        heapq.heappush(self.events, (at, kind, self.seq, payload))

    def run(self, trace: Sequence[Job]) -> None:
        self.submit = [job.submit_s for job in trace]
        self.duration = [job.duration_s for job in trace]
        self.last_submit = max(self.submit, default=0.0)
        self.waits = [-1.0] * len(trace)
        events = self.events = [(s, _SUBMIT, i, i) for i, s in enumerate(self.submit)]
        events.append((0.0, _TICK, -1, 0))  # the first tick, at time 0
        heapq.heapify(events)
        self.seq = len(events)  # later events' tie-breakers come after the submissions'
        while events:
            now, kind, _, payload = heapq.heappop(events)
            if kind == _TICK:
                if self.tick(now):
                    return
                continue
            if kind == _END:
                self.on_end(payload, now)
            elif kind == _JOIN:
                self.on_join(self.nodes[payload])
            else:
                self.queue.append(payload)
            self.dispatch(now)

    def tick(self, now: float) -> bool:
        """Run the policy and apply its plan; True once the simulation is over."""
        views = [self.view(node, now) for node in self.live.values()]
        plan = self.policy(now, views, len(self.queue), self.durations, self.config)
        for action in plan.actions:
            self.apply(action, now)
        self.dispatch(now)
        wound_down = not self.live or now - self.last_done >= WIND_DOWN_S
        if (self.done == len(self.submit) and wound_down) or now - self.last_submit > GIVE_UP_S:
            for node in list(self.live.values()):
                self.close(node, now, node.state)
            self.end = now
            return True
        self.push(now + self.tick_s, _TICK, 0)
        return False

    def view(self, node: _Node, now: float) -> rules.NodeView:
        k, seen = self.kind, now if node.joined else None
        busy = len(node.running)
        return rules.NodeView(node.id, node.state, k.slots, busy, k.hourly_price_micros,
                              k.billing_period_s, node.created_at, seen)  # fmt: skip

    def apply(self, action: rules.Action, now: float) -> None:
        if isinstance(action, rules.Create):
            for _ in range(action.count):
                new = _Node(len(self.nodes), f"sim-{len(self.nodes)}", now)
                self.nodes.append(new)
                self.live[new.id] = new
                self.push(now + self.startup_s, _JOIN, new.seq)
            self.peak = max(self.peak, len(self.live))
            return
        node = self.live.get(action.node_id)
        if node is None:  # a plan naming a node that is gone: nothing to do, as on a provider
            return
        if isinstance(action, rules.Drain) and node.state is NodeState.ACTIVE:
            node.state = NodeState.DRAINING
        elif isinstance(action, rules.Undrain) and node.state is NodeState.DRAINING:
            node.state = NodeState.ACTIVE
            self.offer(node)
        elif isinstance(action, rules.Terminate):
            self.terminate(node, now, NodeState.DEAD if action.dead else NodeState.TERMINATED)

    def on_join(self, node: _Node) -> None:
        if node.state is NodeState.PROVISIONING:  # not terminated while it started
            node.joined = True
            node.state = NodeState.ACTIVE
            self.offer(node)

    def offer(self, node: _Node) -> None:
        """Put ``node`` among those dispatch looks at, if it can take work."""
        has_room = len(node.running) < self.kind.slots
        if node.state is NodeState.ACTIVE and has_room and not node.in_free:
            node.in_free = True
            heapq.heappush(self.free, node.seq)

    def dispatch(self, now: float) -> None:
        queue, free, slots = self.queue, self.free, self.kind.slots
        while queue and free:
            node = self.nodes[free[0]]
            if node.state is not NodeState.ACTIVE or len(node.running) >= slots:
                heapq.heappop(free)
                node.in_free = False
                continue
            job, run = queue.popleft(), next(self.run_ids)
            node.running.add(run)
            self.runs[run] = (node, job, now)
            self.waits[job] = now - self.submit[job]
            self.push(now + self.duration[job], _END, run)

    def on_end(self, run: int, now: float) -> None:
        entry = self.runs.pop(run, None)
        if entry is None:  # its node was terminated under it: the job was queued again
            return
        node, _, start = entry
        node.running.discard(run)
        self.busy_slot_s += now - start
        self.durations.append(now - start)
        self.done += 1
        self.last_done = now
        self.offer(node)

    def terminate(self, node: _Node, now: float, state: NodeState) -> None:
        if node.running:
            self.violations += 1
            # newest first to the front of the queue, so they run again in their start order
            for run in sorted(node.running, reverse=True):
                _, job, start = self.runs.pop(run)
                self.busy_slot_s += now - start
                self.queue.appendleft(job)
            node.running.clear()
        self.close(node, now, state)

    def close(self, node: _Node, now: float, state: NodeState) -> None:
        """End ``node``'s bill at ``now``: every period it started, the one running now too."""
        node.state = state
        del self.live[node.id]
        periods = math.floor(max(now - node.created_at, 0.0) / self.kind.billing_period_s) + 1
        self.records.append(NodeRecord(node.id, node.created_at, now, periods, state))

    def result(self, wall_s: float) -> SimResult:
        kind = self.kind
        periods = sum(r.periods for r in self.records)
        per_period = kind.hourly_price_micros * kind.billing_period_s / 3600.0
        cost = sum(round(r.periods * per_period) for r in self.records)
        paid_slot_s = periods * kind.billing_period_s * kind.slots
        waits = sorted(w for w in self.waits if w >= 0.0)
        return SimResult(
            node_hours=periods * kind.billing_period_s / 3600.0,
            cost_micros=cost,
            wait_p50_s=percentile(waits, 0.50),
            wait_p95_s=percentile(waits, 0.95),
            wait_max_s=waits[-1] if waits else 0.0,
            utilisation=self.busy_slot_s / paid_slot_s if paid_slot_s else 0.0,
            peak_nodes=self.peak,
            jobs_run=self.done,
            violations=self.violations,
            end_s=self.end,
            wall_s=wall_s,
            nodes=tuple(sorted(self.records, key=lambda r: r.created_at)),
        )


def percentile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile of ``ordered`` (sorted ascending); 0 when empty."""
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)] if ordered else 0.0


def idle_timeout_policy(idle_s: float = IDLE_TIMEOUT_S) -> Policy:
    """A Ray-like autoscaler: ``decide``'s scale-up and dead-node rules, but a node idle for
    ``idle_s`` is terminated whatever its billing period, and none is ever drained. The callable
    keeps when it first saw each node idle, so use a new one per simulation."""
    idle_since: dict[str, float] = {}

    def policy(
        now: float,
        nodes: Sequence[rules.NodeView],
        queued_slots: int,
        durations: Sequence[float],
        config: rules.ScalingConfig,
        *,
        create_blocked_until: float | None = None,
    ) -> rules.Plan:
        plan = rules.decide(
            now, nodes, queued_slots, durations, config, create_blocked_until=create_blocked_until
        )
        dead = [a for a in plan.actions if isinstance(a, rules.Terminate) and a.dead]
        actions = [a for a in plan.actions if isinstance(a, rules.Create) or a in dead]
        # idle since the first call that saw it active with nothing running
        idle = [n.id for n in nodes if n.state is NodeState.ACTIVE and n.busy == 0]
        kept_since = {i: idle_since.get(i, now) for i in idle}
        idle_since.clear()
        idle_since.update(kept_since)
        kept = len(nodes) - len(dead)
        for node_id, since in idle_since.items():
            if now - since >= idle_s and kept > config.min_nodes:
                actions.append(rules.Terminate(node_id, f"idle for {now - since:.0f} s"))
                kept -= 1
        return rules.Plan(tuple(actions), plan.status)

    return policy


def static_fleet(n: int) -> Policy:
    """A fixed fleet: creates ``n`` nodes at the first call (and any missing since), never
    drains or terminates one, whatever the queue or ``config.max_nodes``."""

    def policy(
        now: float,
        nodes: Sequence[rules.NodeView],
        queued_slots: int,
        durations: Sequence[float],
        config: rules.ScalingConfig,
        *,
        create_blocked_until: float | None = None,
    ) -> rules.Plan:
        del now, queued_slots, durations, config, create_blocked_until
        missing = n - len(nodes)
        actions = (rules.Create(missing, f"a static fleet of {n}"),) if missing > 0 else ()
        return rules.Plan(actions, f"{len(nodes)} of {n} static nodes")

    return policy


def synthetic_day(seed: int, executions: int = 100_000) -> list[Job]:
    """``executions`` one-slot executions over a day, by submission: batches of ``BATCH_MIN`` to
    ``BATCH_MAX`` (log-uniform), more by day than by night, each with its own log-normal run
    times (median in ``MEDIAN_RANGE_S``, capped); the same seed gives the same trace."""
    rng = random.Random(seed)
    jobs: list[Job] = []
    left = executions
    while left > 0:
        size = min(round(10 ** rng.uniform(math.log10(BATCH_MIN), math.log10(BATCH_MAX))), left)
        if left - size < BATCH_MIN and left <= BATCH_MAX:
            size = left  # no runt batch at the end
        jobs += _batch(rng, size)
        left -= size
    jobs.sort(key=lambda job: job.submit_s)
    return jobs


def _batch(rng: random.Random, size: int) -> list[Job]:
    start = _batch_start(rng)
    mu = rng.uniform(*(math.log(m) for m in MEDIAN_RANGE_S))  # the log of the median
    sigma = rng.uniform(*SIGMA_RANGE)
    durations = (rng.lognormvariate(mu, sigma) for _ in range(size))
    return [
        Job(start + i / SUBMIT_PER_S, min(max(d, DURATION_MIN_S), DURATION_MAX_S))
        for i, d in enumerate(durations)
    ]


def _batch_start(rng: random.Random) -> float:
    """A submission time in the day, from a rate that peaks at 14:00 (by rejection sampling)."""
    while True:
        at = rng.uniform(0.0, DAY_S)
        hour = at / 3600.0  # a half sine from 07:00 to 21:00 over a night floor
        daylight = math.sin(math.pi * (hour - 7.0) / 14.0) if 7.0 <= hour <= 21.0 else 0.0
        if rng.random() < NIGHT_WEIGHT + (1.0 - NIGHT_WEIGHT) * daylight:
            return at
