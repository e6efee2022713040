"""The autoscaler loop (SPEC §10): every tick it looks at the queue, the provider's machines and
the Ray cluster, asks the policy (``autoscaler.policy.decide``) what to do, and does it.

It owns the records of the nodes it makes (the workers table: provider, id, kind, state,
heartbeat, end), so ``rgrid workers`` shows each one from ``provisioning`` to ``terminated``
or ``dead``, and billing closes each node's periods from its creation to the period it ended
in. A provider error backs creating off (2, 4, 8 … s, at most ``BACKOFF_MAX_S``); what is
queued stays queued and the reason is shown by ``rgrid workers``. On a restart it finds its
nodes again (its records and the provider's list); it never deletes nodes when the server
stops: their paid hours go on being used after a restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol
from urllib.parse import urlparse

from rgrid import autoscaler, domain, errors, store, tasks
from rgrid.autoscaler import Provider, ProviderNode, node_name, scaling_config
from rgrid.autoscaler.policy import (
    LIVE,
    Create,
    Drain,
    NodeState,
    NodeView,
    Plan,
    ScalingConfig,
    Terminate,
    Undrain,
    decide,
)
from rgrid.executor import Executor
from rgrid.executor.ray import Member, RayExecutor
from rgrid.services import Grid, utcnow
from rgrid.store import executions as execution_repo
from rgrid.store import workers as worker_repo

logger = logging.getLogger(__name__)

BACKOFF_BASE_S = 2.0
BACKOFF_MAX_S = 300.0
#: how often the run times the policy uses are read again
HISTORY_EVERY_S = 30.0
#: how long the last provider error stays shown after it was overcome
ERROR_SHOWN_S = 600.0


class Cluster(Protocol):
    """What the autoscaler needs of the executor (``RayExecutor``)."""

    autoscaled: bool
    #: the nodes the autoscaler made and has not ended: the executor uses no other named node
    owned: frozenset[str]

    def members(self) -> dict[str, Member]: ...

    def set_draining(self, name: str, draining: bool) -> None: ...


@dataclasses.dataclass
class _Node:
    machine: ProviderNode
    state: NodeState
    seen_at: float | None = None
    ended_at: datetime | None = None
    member: Member | None = None
    reason: str = ""
    #: its end is on record (nothing about it changes any more)
    recorded_end: bool = False


class Autoscaler:
    def __init__(self, grid: Grid, cluster: Cluster, provider: Provider) -> None:
        self._grid = grid
        self._cluster = cluster
        self._provider = provider
        self._config: ScalingConfig | None = None
        self._nodes: dict[str, _Node] = {}
        self._durations: list[float] = []
        self._durations_at = 0.0
        self._failures = 0
        self._blocked_until: float | None = None
        self._last_error: tuple[str, float] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def config(self) -> ScalingConfig:
        assert self._config is not None, "open() first"
        return self._config

    async def open(self) -> None:
        """Check the configuration against what the provider offers (``InvalidRequest`` when
        it cannot work) and take up the nodes made before a restart."""
        try:
            kinds = await self._provider.kinds()
        except errors.ProviderError as exc:
            raise errors.InvalidRequest(
                f"the autoscaler's provider {self._provider.name!r} cannot be used: {exc}",
                hint="check its token and that its API can be reached",
            ) from exc
        self._config = scaling_config(self._grid.settings, kinds, self._provider.default_kind)
        self._cluster.autoscaled = True
        async with store.transaction(self._grid.sessions) as session:
            records = await worker_repo.of_provider(
                session, self._provider.name, utcnow() - timedelta(days=1)
            )
        for record in records:
            if record.state not in LIVE:
                continue
            machine = ProviderNode(
                provider_id=record.provider_id or record.id,
                name=record.id,
                kind=record.kind or "",
                hourly_price_micros=record.hourly_price_micros,
                billing_period_s=record.billing_period_s,
                created_at=record.started_at,
            )
            taken = _Node(machine, NodeState(record.state))
            if taken.state is not NodeState.PROVISIONING:
                # a fresh heartbeat window: the cluster is looked at from now on
                taken.seen_at = time.time()
            self._nodes[record.id] = taken
        self._publish("starting")

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="autoscaler")

    async def close(self) -> None:
        await tasks.cancel_and_wait(self._task)

    def billed(self) -> list[tuple[str, datetime]]:
        """The nodes whose billing periods are to be closed: live ones, and ended ones until
        the period they ended in is closed."""
        return [(name, node.machine.created_at) for name, node in self._nodes.items()]

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                logger.exception("autoscaler tick failed", extra={"action": "autoscale_failed"})
            await asyncio.sleep(self._grid.settings.autoscale_tick_s)

    async def tick(self) -> Plan:
        """Look, decide, act: once."""
        now = time.time()
        await self._look(now)
        async with store.transaction(self._grid.sessions) as session:
            queued = await execution_repo.waiting_demand(session)
            if now - self._durations_at > HISTORY_EVERY_S:
                self._durations = await execution_repo.recent_run_seconds(
                    session, self.config.history
                )
                self._durations_at = now
        views = [self._view(name, node) for name, node in self._nodes.items() if node.state in LIVE]
        plan = decide(
            now,
            views,
            queued,
            self._durations,
            self.config,
            create_blocked_until=self._blocked_until,
        )
        for action in plan.actions:
            await self._act(action, now)
        self._cluster.owned = frozenset(n for n, node in self._nodes.items() if node.state in LIVE)
        await self._record(now)
        self._publish(plan.status)
        return plan

    async def _look(self, now: float) -> None:
        """Bring each node's state up to what the provider and the cluster say."""
        try:
            machines = {m.name: m for m in await self._provider.nodes()}
        except errors.ProviderError as exc:
            self._failed(exc, now, backoff=False)
            machines = None
        members = self._cluster.members()
        for name, machine in (machines or {}).items():
            if name not in self._nodes:  # made before a restart, not on record
                self._nodes[name] = _Node(machine, NodeState.PROVISIONING)
        for name, node in self._nodes.items():
            if node.state not in LIVE:
                continue
            if machines is not None and name not in machines:
                await self._end(name, node, NodeState.DEAD, "gone at the provider")
                continue
            node.member = members.get(name)
            # the executor's flag follows the state (after a restart it knows of no draining)
            self._cluster.set_draining(name, node.state is NodeState.DRAINING)
            if node.member is None:
                continue
            node.seen_at = now  # alive in the cluster; it gets work once its probe answers
            if node.state is NodeState.PROVISIONING and node.member.unusable is None:
                node.state = NodeState.ACTIVE
                logger.info("node joined", extra={"action": "node_active", "node": name})

    async def _act(self, action: Create | Drain | Undrain | Terminate, now: float) -> None:
        if isinstance(action, Create):
            await self._create(action.count, now)
        elif isinstance(action, Drain):
            self._cluster.set_draining(action.node_id, True)
            self._nodes[action.node_id].state = NodeState.DRAINING
            logger.info(
                "draining %s: %s",
                action.node_id,
                action.reason,
                extra={"action": "node_draining", "node": action.node_id},
            )
        elif isinstance(action, Undrain):
            self._cluster.set_draining(action.node_id, False)
            node = self._nodes[action.node_id]
            node.state = NodeState.ACTIVE if node.seen_at is not None else NodeState.PROVISIONING
        elif action.dead:
            await self._end(
                action.node_id, self._nodes[action.node_id], NodeState.DEAD, action.reason
            )
        else:
            node = self._nodes[action.node_id]
            decided_in = self._view(action.node_id, node).period_end(now)
            await self._end(action.node_id, node, NodeState.TERMINATED, action.reason, decided_in)

    async def _create(self, count: int, now: float) -> None:
        for _ in range(count):
            name = node_name()
            try:
                machine = await self._provider.create(self.config.kind, name)
            except errors.ProviderError as exc:
                self._failed(exc, now, backoff=True)
                return
            self._failures, self._blocked_until = 0, None
            self._nodes[name] = _Node(machine, NodeState.PROVISIONING)
            logger.info("node created", extra={"action": "node_created", "node": name})

    async def _end(
        self,
        name: str,
        node: _Node,
        state: NodeState,
        reason: str,
        period_end: float | None = None,
    ) -> None:
        """Delete the node at the provider (its executions, if any, come back from the
        executor as ``worker_lost`` and are retried); a failed delete is tried again on the
        next tick. An end planned for the close of a paid period (``period_end``) is not asked
        for once that period is over: the next one is paid by then, so the node stays draining
        and the policy gives it work again."""
        self._cluster.set_draining(name, True)
        asked = utcnow()  # it ends when it is asked to (a machine may take seconds to stop)
        if period_end is not None and asked.timestamp() >= period_end:
            logger.info(
                "not ending %s: a new billing period began before the delete was asked",
                name,
                extra={"action": "node_end_skipped", "node": name},
            )
            return
        try:
            await self._provider.delete(node.machine)
        except errors.ProviderError as exc:
            self._failed(exc, time.time(), backoff=False)
            return
        if state is NodeState.DEAD and node.state is NodeState.PROVISIONING:
            # a machine that never joined counts against creating: a broken image or
            # network would otherwise buy machine after machine
            self._failures += 1
            self._blocked_until = time.time() + _backoff(self._failures)
        node.state, node.ended_at, node.reason = state, asked, reason
        logger.warning(
            "node %s %s: %s",
            name,
            state.value,
            reason,
            extra={"action": f"node_{state.value}", "node": name},
        )

    def _failed(self, exc: errors.ProviderError, now: float, *, backoff: bool) -> None:
        self._last_error = (exc.message, now)
        if backoff:
            self._failures += 1
            self._blocked_until = now + _backoff(self._failures)
        logger.warning(
            "provider %s: %s",
            self._provider.name,
            exc.message,
            extra={"action": "provider_error", "failures": self._failures},
        )

    async def _record(self, now: float) -> None:
        """Put every node on record; forget ended ones whose last period is closed."""
        stamp = datetime.fromtimestamp(now, UTC)
        async with store.transaction(self._grid.sessions) as session:
            for name, node in self._nodes.items():
                if not node.recorded_end:  # an ended node's record no longer changes
                    await worker_repo.register(session, self._worker(name, node, stamp))
                    node.recorded_end = node.ended_at is not None
        for name, node in list(self._nodes.items()):
            if node.ended_at is not None:
                period = timedelta(seconds=node.machine.billing_period_s)
                if stamp > node.ended_at + 2 * period:
                    del self._nodes[name]

    def _worker(self, name: str, node: _Node, now: datetime) -> domain.Worker:
        member, machine = node.member, node.machine
        seen = datetime.fromtimestamp(node.seen_at, UTC) if node.seen_at else machine.created_at
        return domain.Worker(
            id=name,
            node=member.address if member else "",
            executor="ray",
            slots=self.config.kind.slots if member is None else member.cpus,
            hourly_price_micros=machine.hourly_price_micros,
            billing_period_s=machine.billing_period_s,
            started_at=machine.created_at,
            heartbeat_at=min(seen, now),
            state=node.state.value,
            sandbox=node.reason if node.ended_at else (member.sandbox if member else ""),
            pythons=member.pythons if member else (),
            provider=self._provider.name,
            provider_id=machine.provider_id,
            kind=machine.kind,
            ended_at=node.ended_at,
        )

    def _view(self, name: str, node: _Node) -> NodeView:
        machine, member = node.machine, node.member
        return NodeView(
            id=name,
            state=node.state,
            # one that has not joined yet counts with the slots it will bring
            slots=member.cpus if member else self.config.kind.slots,
            busy=member.busy if member else 0,
            hourly_price_micros=machine.hourly_price_micros,
            billing_period_s=machine.billing_period_s,
            created_at=machine.created_at.timestamp(),
            seen_at=node.seen_at,
        )

    def _publish(self, status: str) -> None:
        error, error_at = self._last_error or (None, None)
        if error_at is not None and time.time() - error_at > ERROR_SHOWN_S:
            error = error_at = None
        self._grid.autoscaler = domain.AutoscalerStatus(
            provider=self._provider.name,
            kind=self.config.kind.name,
            min_nodes=self.config.min_nodes,
            max_nodes=self.config.max_nodes,
            status=status,
            last_error=error,
            last_error_at=datetime.fromtimestamp(error_at, UTC) if error_at else None,
            backoff_until=(
                datetime.fromtimestamp(self._blocked_until, UTC)
                if self._blocked_until and self._blocked_until > time.time()
                else None
            ),
        )


def prepare(grid: Grid, executor: Executor) -> Autoscaler | None:
    """The autoscaler the settings ask for (None: none), before the executor opens;
    ``InvalidRequest`` when it cannot work with this executor or provider."""
    settings = grid.settings
    if not settings.autoscale_provider:
        return None
    if not isinstance(executor, RayExecutor):
        raise errors.InvalidRequest(
            "the autoscaler adds nodes to a Ray cluster, and the executor is "
            f"{settings.executor!r}",
            hint="set RGRID_EXECUTOR=ray://HOST:PORT, or unset RGRID_AUTOSCALE_PROVIDER",
        )
    join = settings.autoscale_join_address or urlparse(settings.executor).netloc
    executor.autoscaled = True  # a cluster of only its head is fine: nodes come with work
    return Autoscaler(grid, executor, autoscaler.from_settings(settings, join))


def _backoff(failures: int) -> float:
    return float(min(BACKOFF_BASE_S * 2 ** (failures - 1), BACKOFF_MAX_S))
