"""The autoscaler's policy: what to do with the fleet, as a pure function of the queue, the
nodes, the clock and the run times seen so far (SPEC §10).

The same function runs under the grid's loop (``services.autoscaling``) and under the
simulator (``autoscaler.simulator``, ``bench/autoscale_sim.py``); it does no I/O and keeps no
state, so each rule below is tested with a simulated clock. Times are seconds on one clock
(the loop passes Unix time).

The rules, in the order ``decide`` applies them:

1. A node that has not joined ``join_timeout_s`` after it was created, or whose last sign of
   life is older than ``heartbeat_timeout_s``, is dead: terminated (its executions are retried
   by the grid as ``worker_lost``) and, when the queue needs it, replaced by rule 3.
2. A draining node gets work again when the queue needs it (it is paid for anyway), or when
   it crossed into a new billing period (still busy at the end, or its deletion failed).
3. Scale up when queued demand exceeds the free slots and would not drain within
   ``horizon_s`` at the typical run time seen so far; never above ``max_nodes`` or
   ``max_hourly_micros``, never while creating is backing off after a provider error.
4. An idle node is drained in the last ``drain_before_end_s`` of its billing period when the
   queue does not need it (and the fleet stays at ``min_nodes`` or more); a draining node with
   nothing running is terminated. A busy node, or one in the middle of a paid period, never is.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from enum import StrEnum


class NodeState(StrEnum):
    #: created at the provider, not in the cluster yet
    PROVISIONING = "provisioning"
    #: in the cluster, given work
    ACTIVE = "active"
    #: given no new work: to be terminated once what runs there ends
    DRAINING = "draining"
    #: deleted at the provider by the autoscaler
    TERMINATED = "terminated"
    #: never joined, or stopped answering: deleted, its executions retried
    DEAD = "dead"


LIVE = (NodeState.PROVISIONING, NodeState.ACTIVE, NodeState.DRAINING)


@dataclasses.dataclass(frozen=True)
class NodeKind:
    """A kind of machine a provider offers: its CPU slots and what it costs."""

    name: str
    slots: int
    hourly_price_micros: int
    billing_period_s: float = 3600.0


@dataclasses.dataclass(frozen=True)
class NodeView:
    """One node of the fleet as the policy sees it."""

    id: str
    state: NodeState
    slots: int
    busy: int
    hourly_price_micros: int
    billing_period_s: float
    created_at: float
    #: the last time the cluster saw it alive (None: it has not joined yet)
    seen_at: float | None = None

    def period_end(self, now: float) -> float:
        """The end of its current billing period (periods run back to back from creation;
        at a boundary exactly, the period that starts there)."""
        elapsed = max(now - self.created_at, 0.0)
        return self.created_at + (math.floor(elapsed / self.billing_period_s) + 1) * (
            self.billing_period_s
        )


@dataclasses.dataclass(frozen=True)
class ScalingConfig:
    kind: NodeKind
    min_nodes: int = 0
    max_nodes: int = 10
    #: the most the live fleet may cost an hour (None: no bound besides ``max_nodes``)
    max_hourly_micros: int | None = None
    #: how long queued work may take to drain before another node is worth it
    horizon_s: float = 300.0
    join_timeout_s: float = 600.0
    heartbeat_timeout_s: float = 60.0
    #: an idle node is drained and terminated this long before its period ends
    drain_before_end_s: float = 120.0
    #: the run time assumed while none has been seen
    default_duration_s: float = 60.0
    #: how many of the latest run times the typical one is taken from
    history: int = 200


@dataclasses.dataclass(frozen=True)
class Create:
    count: int
    reason: str


@dataclasses.dataclass(frozen=True)
class Drain:
    node_id: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Undrain:
    node_id: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Terminate:
    node_id: str
    reason: str
    #: it never joined or stopped answering (its state becomes dead, not terminated)
    dead: bool = False


Action = Create | Drain | Undrain | Terminate


@dataclasses.dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    #: one line on where the fleet stands, for ``rgrid workers``
    status: str


def typical_duration(durations: Sequence[float], config: ScalingConfig) -> float:
    """The mean of the latest run times (a mean, not a median: a queue drains at the mean)."""
    recent = durations[-config.history :]
    return sum(recent) / len(recent) if recent else config.default_duration_s


def decide(
    now: float,
    nodes: Sequence[NodeView],
    queued_slots: int,
    durations: Sequence[float],
    config: ScalingConfig,
    *,
    create_blocked_until: float | None = None,
) -> Plan:
    """The actions for the fleet ``nodes`` (live ones: provisioning, active, draining) at
    ``now``, with ``queued_slots`` CPU slots of executions waiting (queued or to be retried)
    and ``durations`` the run times seen so far, oldest first."""
    actions: list[Action] = []
    live: list[NodeView] = []
    for node in nodes:
        reason = _dead(node, now, config)
        if reason is not None:
            actions.append(Terminate(node.id, reason, dead=True))
        else:
            live.append(node)

    serving = [n for n in live if n.state is not NodeState.DRAINING]
    free = sum(_free(n) for n in serving)
    backlog = max(queued_slots - free, 0)
    for node in live:
        if node.state is not NodeState.DRAINING:
            continue
        if backlog > 0:
            actions.append(Undrain(node.id, f"{queued_slots} slots of work queued"))
            backlog = max(backlog - _free(node), 0)
            serving.append(node)
        elif node.period_end(now) - now > config.drain_before_end_s:
            # it crossed into a new period (busy, or its termination failed): paid, so kept
            actions.append(Undrain(node.id, "a new billing period began"))
            serving.append(node)

    typical = typical_duration(durations, config)
    want, status = _scale_up(live, serving, queued_slots, typical, config)
    if want and create_blocked_until is not None and now < create_blocked_until:
        status = f"{status}; creating is backing off for {create_blocked_until - now:.0f} s"
    elif want:
        actions.append(Create(want, status))
    undrained = {a.node_id for a in actions if isinstance(a, Undrain)}
    spare = sum(_free(n) for n in serving) - queued_slots  # free slots no waiting work needs
    actions += _scale_down(now, live, undrained, spare, want, config)
    return Plan(tuple(actions), status)


def _free(node: NodeView) -> int:
    return max(node.slots - node.busy, 0)


def _dead(node: NodeView, now: float, config: ScalingConfig) -> str | None:
    if node.state is NodeState.PROVISIONING:
        # (one in the cluster whose probe fails, e.g. without bubblewrap, never joins either)
        if now - node.created_at > config.join_timeout_s:
            return f"did not join the cluster within {config.join_timeout_s:.0f} s"
        return None
    if node.seen_at is None or now - node.seen_at > config.heartbeat_timeout_s:
        if node.seen_at is None:
            return "never seen alive"
        return f"not seen alive for {now - node.seen_at:.0f} s"
    return None


def _scale_up(
    live: list[NodeView],
    serving: list[NodeView],
    queued_slots: int,
    typical_s: float,
    config: ScalingConfig,
) -> tuple[int, str]:
    """How many nodes to create, and the fleet's status line."""
    capacity = sum(n.slots for n in serving)
    free = sum(_free(n) for n in serving)
    kind = config.kind
    wanted_slots = 0
    if queued_slots > free:
        # the queue drains at ``capacity`` slots; what it cannot drain within the horizon
        # needs more, though never more slots than executions without one
        needed = math.ceil(queued_slots * typical_s / config.horizon_s)
        if capacity == 0 or queued_slots * typical_s / capacity > config.horizon_s:
            wanted_slots = min(max(needed - capacity, 1), queued_slots - free)
    want = max(math.ceil(wanted_slots / kind.slots), config.min_nodes - len(live), 0)
    room = config.max_nodes - len(live)
    if config.max_hourly_micros is not None and kind.hourly_price_micros > 0:
        spend = sum(n.hourly_price_micros for n in live)
        room = min(room, (config.max_hourly_micros - spend) // kind.hourly_price_micros)
    status = (
        f"{len(live)} node{'' if len(live) == 1 else 's'}, "
        f"{free} of {capacity} slots free, {queued_slots} queued"
    )
    if want > room:
        bound = "nodes" if room == config.max_nodes - len(live) else "hourly spend"
        status += f"; at the maximum {bound}, {want - max(room, 0)} more would help"
    want = max(min(want, room), 0)
    if want:
        status += f"; adding {want} node{'s' if want > 1 else ''}"
    return want, status


def _scale_down(
    now: float,
    live: list[NodeView],
    undrained: set[str],
    spare: int,
    creating: int,
    config: ScalingConfig,
) -> list[Action]:
    actions: list[Action] = []
    # nodes that stay: the ones already draining are going
    kept = creating + sum(1 for n in live if n.state is not NodeState.DRAINING or n.id in undrained)
    # the fewest nodes first: when several may go, the ones whose periods end soonest go
    for node in sorted(live, key=lambda n: n.period_end(now)):
        left = node.period_end(now) - now
        if node.state is NodeState.DRAINING and node.id not in undrained:
            if node.busy == 0:
                actions.append(Terminate(node.id, "idle at the end of its billing period"))
            continue
        if (
            node.state is NodeState.ACTIVE
            and node.busy == 0
            and spare >= node.slots  # the waiting work fits elsewhere
            and left <= config.drain_before_end_s
            and kept > config.min_nodes
        ):
            actions.append(Drain(node.id, f"idle, its billing period ends in {left:.0f} s"))
            kept, spare = kept - 1, spare - node.slots
    return actions
