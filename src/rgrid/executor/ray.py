"""RayExecutor: claimed executions run as Ray tasks on the nodes of a Ray cluster.

Each node with CPUs is a worker of the grid (``ray:<node id>``) with one slot per CPU. The
executor places each execution on a node with a free slot itself (so the claim records which
worker runs it, and cost and billing are that node's), then submits one task pinned there,
sized by its CPU and memory request. The task runs ``raynode.run_attempt``: the runner
pipeline, talking to the control plane over HTTP with the attempt's own credential. Its return
value is the outcome; a task that fails (its node died, its worker process was killed) is a
``worker_lost`` outcome, retried on another node as any lost worker's executions are.

A node is probed once when it joins (a zero-CPU task): its Pythons, its sandbox and rgrid's
version. A node without bubblewrap or with another rgrid version gets no work; ``rgrid
workers`` shows it and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rgrid import __version__, domain, errors, tasks
from rgrid.autoscaler import NODE_RESOURCE_PREFIX
from rgrid.domain import ExecutionState
from rgrid.executor import DoneCallback, Placement
from rgrid.runner import ControlPlane

logger = logging.getLogger(__name__)

#: how often the cluster's nodes are looked at
REFRESH_S = 2.0
#: how long the head may take to answer at start
CONNECT_S = 10.0
NAMESPACE = "rgrid"

#: a credential for (execution id, attempt, worker id)
CredentialFactory = Callable[[str, int, str], str]


@dataclasses.dataclass
class Node:
    """A Ray node as the executor sees it."""

    node_id: str
    address: str
    cpus: int
    first_seen: datetime
    busy: int = 0
    #: what the probe found (None: not probed yet)
    offers: dict[str, Any] | None = None
    probing: bool = False
    #: the autoscaler's name for it (its ``rgrid-node-<name>`` resource); None: joined by hand
    name: str | None = None
    #: given no new work (the autoscaler is about to terminate it)
    draining: bool = False

    @property
    def worker(self) -> str:
        return self.name or f"ray:{self.node_id[:16]}"

    @property
    def pythons(self) -> tuple[str, ...]:
        """The runtimes its probe found ("python3.11")."""
        return tuple(f"python{v}" for v in (self.offers or {}).get("pythons", ()))

    @property
    def unusable(self) -> str | None:
        """Why this node gets no work (None: it does)."""
        if self.offers is None:
            return "not probed yet"
        if self.offers.get("error"):
            return str(self.offers["error"])
        if self.offers.get("rgrid") != __version__:
            return f"rgrid {self.offers.get('rgrid')} on the node, {__version__} on the server"
        if not self.offers.get("bwrap"):
            return "no bubblewrap (bwrap) on the node"
        if not self.offers.get("pythons"):
            return "no Python found on the node"
        return None


@dataclasses.dataclass(frozen=True)
class Member:
    """A node the autoscaler made, as the cluster has it now."""

    name: str
    address: str
    cpus: int
    busy: int
    #: why it gets no work (None: it does)
    unusable: str | None
    sandbox: str
    pythons: tuple[str, ...]


@dataclasses.dataclass
class _Running:
    spec: domain.ExecutionSpec
    node: Node
    ref: Any
    task: asyncio.Task[None] | None = None
    cancelled: bool = False


class RayExecutor:
    name = "ray"
    remote = True

    def __init__(
        self,
        address: str,
        *,
        control_url: str,
        credential: CredentialFactory,
        price: tuple[int, float] = (0, 3600.0),
    ) -> None:
        self._ray: Any = require_ray()  # loaded here: the server imports Ray only when it uses it
        self._address = address
        self._control_url = control_url
        self._credential = credential
        self._price = price
        self._nodes: dict[str, Node] = {}
        self._running: dict[str, _Running] = {}
        self._refresher: asyncio.Task[None] | None = None
        self._probes: set[asyncio.Task[None]] = set()
        self._reporting: set[asyncio.Future[None]] = set()
        self._remote: Any = None
        self.started = 0
        self.env_builds = 0
        #: an autoscaler keeps the records of the nodes it made (``members``)
        self.autoscaled = False
        #: the names of the nodes it made (the only autoscaled nodes this grid uses)
        self.owned: frozenset[str] = frozenset()

    # -- the cluster -----------------------------------------------------------------------

    async def open(self) -> None:
        """Join the cluster and start watching its nodes; ``InvalidRequest`` when it cannot be
        reached or has no CPU at all."""
        await asyncio.to_thread(self._connect)
        self._refresher = asyncio.create_task(self._refresh_loop(), name="ray-nodes")

    def _connect(self) -> None:
        ray = self._ray
        host, _, port = self._address.rpartition(":")
        try:  # Ray itself keeps retrying an address nobody answers at for minutes
            socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_S).close()
        except (OSError, ValueError) as exc:
            raise errors.InvalidRequest(
                f"the Ray cluster at {self._address!r} cannot be reached: {exc}",
                hint="start it with `ray start --head` and give its address as ray://HOST:PORT",
            ) from exc
        try:
            ray.init(
                address=self._address,
                namespace=NAMESPACE,
                log_to_driver=False,
                logging_level=logging.WARNING,
                configure_logging=False,
            )
        except Exception as exc:  # ConnectionError, TimeoutError, ValueError ...
            raise errors.InvalidRequest(
                f"the Ray cluster at {self._address!r} cannot be reached: {exc}",
                hint="start it with `ray start --head` and give its address as ray://HOST:PORT",
            ) from exc
        if not self.autoscaled and not ray.cluster_resources().get("CPU"):
            # (with an autoscaler a cluster of only its head is fine: nodes come with work)
            ray.shutdown()
            raise errors.InvalidRequest(
                f"the Ray cluster at {self._address!r} has no CPUs to run scripts on",
                hint="join worker nodes with `ray start --address HOST:PORT`",
            )
        self._apply_nodes(ray.nodes())

    def _apply_nodes(self, infos: list[dict[str, Any]]) -> None:
        """Bring the node table up to what Ray reports (on the event loop: the dispatcher
        reads the table there)."""
        seen: set[str] = set()
        for info in infos:
            cpus = int(info.get("Resources", {}).get("CPU", 0))
            if not info.get("Alive") or cpus < 1:
                continue
            node_id = str(info["NodeID"])
            seen.add(node_id)
            if node_id not in self._nodes:
                address = str(info.get("NodeManagerAddress", ""))
                node = Node(node_id, address, cpus, datetime.now(UTC))
                node.name = _node_name(info.get("Resources", {}))
                self._nodes[node_id] = node
                logger.info("node joined", extra={"action": "node_joined", "node": node_id})
        for node_id in set(self._nodes) - seen:
            logger.warning("node gone", extra={"action": "node_gone", "node": node_id})
            del self._nodes[node_id]

    async def _refresh_loop(self) -> None:
        while True:
            try:
                self._apply_nodes(await asyncio.to_thread(self._ray.nodes))
                for node in list(self._nodes.values()):
                    if node.offers is None and not node.probing:
                        node.probing = True
                        probe = asyncio.create_task(self._probe(node))
                        self._probes.add(probe)
                        probe.add_done_callback(self._probes.discard)
            except Exception:
                logger.exception("looking at the Ray cluster failed", extra={"action": "ray_nodes"})
            await asyncio.sleep(REFRESH_S)

    async def _probe(self, node: Node) -> None:
        from rgrid.executor import raynode

        ray = self._ray
        probe = ray.remote(num_cpus=0, max_retries=0)(raynode.probe)
        strategy = _pinned(node.node_id)
        try:
            node.offers = await probe.options(scheduling_strategy=strategy).remote()
        except Exception as exc:
            node.offers = {"error": f"the node could not run rgrid: {type(exc).__name__}: {exc}"}
        finally:
            node.probing = False
        reason = node.unusable
        if reason is not None:
            logger.warning(
                "node gets no work: %s",
                reason,
                extra={"action": "node_unusable", "node": node.node_id},
            )

    # -- the Executor protocol ---------------------------------------------------------------

    @property
    def slots(self) -> int:
        return sum(node.cpus for node in self._usable())

    def _usable(self) -> list[Node]:
        return [node for node in self._nodes.values() if node.unusable is None]

    def _serving(self) -> list[Node]:
        return [node for node in self._usable() if not node.draining and self._ours(node)]

    def _ours(self, node: Node) -> bool:
        """Whether the node is this grid's to use: one joined by hand, or one its autoscaler
        made (another grid's autoscaled node on the same cluster is not)."""
        return node.name is None or not self.autoscaled or node.name in self.owned

    def free_slots(self) -> int:
        return sum(max(node.cpus - node.busy, 0) for node in self._serving())

    def place(self) -> list[Placement]:
        """The nodes with a free slot, least busy first, each with the Pythons it offers."""
        free = sorted(
            (node for node in self._serving() if node.busy < node.cpus),
            key=lambda n: (n.busy / n.cpus, n.busy),
        )
        return [
            Placement(node.worker, frozenset((node.offers or {}).get("pythons", ())))
            for node in free
        ]

    def running(self) -> list[str]:
        return list(self._running)

    def _run_attempt(self) -> Any:
        """``raynode.run_attempt`` as a Ray remote function, made once (Ray ships its
        definition to the cluster once, not with every task)."""
        if self._remote is None:
            from rgrid.executor import raynode

            self._remote = self._ray.remote(raynode.run_attempt)
        return self._remote

    def start(self, spec: domain.ExecutionSpec, plane: ControlPlane, on_done: DoneCallback) -> None:
        del plane  # the node talks to the control plane over HTTP (``raynode``)
        found = [node for node in self._nodes.values() if node.worker == spec.worker]
        if not found:  # it left the cluster since it was placed: the grid retries elsewhere
            gone = domain.worker_lost(f"{spec.worker}: the node left the cluster before it started")
            report = asyncio.ensure_future(on_done(spec, gone))
            self._reporting.add(report)
            report.add_done_callback(self._reporting.discard)
            return
        (node,) = found
        self.started += 1
        node.busy += 1
        credential = self._credential(spec.execution_id, spec.attempt, node.worker)
        task = self._run_attempt().options(
            num_cpus=1,
            memory=spec.memory_bytes,
            max_retries=0,  # a lost attempt is retried by the grid, as a new attempt
            scheduling_strategy=_pinned(node.node_id),
            name=f"rgrid {spec.execution_id} attempt {spec.attempt}",
        )
        # The --env values stay out of the task: the node fetches them with the credential.
        ref = task.remote(dataclasses.replace(spec, env={}), self._control_url, credential)
        running = _Running(spec, node, ref)
        self._running[spec.execution_id] = running
        running.task = asyncio.create_task(self._watch(running, on_done))

    async def _watch(self, running: _Running, on_done: DoneCallback) -> None:
        ray = self._ray
        spec = running.spec
        try:
            outcome: domain.Outcome = await running.ref
        except ray.exceptions.TaskCancelledError:
            outcome = domain.Outcome(ExecutionState.CANCELLED, None, cause="cancelled while it ran")
        except Exception as exc:  # the node died, its worker process was killed ...
            # No more work there until it answers a probe again: Ray takes seconds to call a
            # node dead, and a retry placed on it meanwhile would be lost a second time.
            running.node.offers = None
            logger.warning(
                "a Ray task failed: %s",
                exc,
                extra={"action": "ray_task_failed", "execution_id": spec.execution_id},
            )
            outcome = domain.worker_lost(
                f"{running.node.worker}: the node stopped running it ({type(exc).__name__})"
            )
        finally:
            running.node.busy -= 1
            self._running.pop(spec.execution_id, None)
        self.env_builds += outcome.env_built
        if running.cancelled and outcome.state is not ExecutionState.SUCCEEDED:
            outcome = dataclasses.replace(outcome, state=ExecutionState.CANCELLED)
        await on_done(spec, outcome)

    def cancel(self, execution_id: str) -> bool:
        running = self._running.get(execution_id)
        if running is None:
            return False
        running.cancelled = True
        with contextlib.suppress(Exception):
            self._ray.cancel(running.ref, force=True)
        return True

    # -- what the autoscaler sees and does (``services.autoscaling``) --------------------------

    def members(self) -> dict[str, Member]:
        """The nodes the autoscaler made that are in the cluster now, by name."""
        return {
            node.name: Member(
                node.name,
                node.address,
                node.cpus,
                node.busy,
                node.unusable,
                str((node.offers or {}).get("sandbox", "")),
                node.pythons,
            )
            for node in self._nodes.values()
            if node.name is not None
        }

    def set_draining(self, name: str, draining: bool) -> None:
        """Give the node ``name`` no new work (or work again); what runs there goes on."""
        for node in self._nodes.values():
            if node.name == name:
                node.draining = draining

    def workers(self, now: datetime) -> list[domain.Worker]:
        """The cluster's nodes as the grid records workers (usable or not); with an
        autoscaler, the nodes it made are left out: it keeps their records itself."""
        price, period = self._price
        return [
            domain.Worker(
                id=node.worker,
                node=node.address,
                executor=self.name,
                slots=node.cpus,
                hourly_price_micros=price,
                billing_period_s=period,
                started_at=node.first_seen,
                heartbeat_at=now,
                state="active",
                sandbox=(
                    str((node.offers or {}).get("sandbox", ""))
                    if node.unusable is None
                    else f"gets no work: {node.unusable}"
                ),
                pythons=node.pythons,
            )
            for node in self._nodes.values()
            if not (self.autoscaled and node.name is not None)
        ]

    async def close(self) -> None:
        await tasks.cancel_and_wait(self._refresher)
        for execution_id in list(self._running):
            self.cancel(execution_id)
        watching = [r.task for r in self._running.values() if r.task is not None]
        if watching:
            await asyncio.gather(*watching, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._ray.shutdown)


def require_ray() -> Any:
    """The ``ray`` module, or ``MissingExtra`` naming what to install."""
    try:
        import ray
    except ImportError:
        raise errors.MissingExtra(
            "RGRID_EXECUTOR=ray:// needs Ray on the server, and it is not installed: "
            "pip install 'rgrid[worker]'",
            hint="install rgrid's worker extra: pip install 'rgrid[worker]'",
        ) from None
    return ray


def _node_name(resources: dict[str, Any]) -> str | None:
    """The autoscaler's name for a node, from its ``rgrid-node-<name>`` resource."""
    for resource in resources:
        if resource.startswith(NODE_RESOURCE_PREFIX):
            return resource.removeprefix(NODE_RESOURCE_PREFIX)
    return None


def _pinned(node_id: str) -> Any:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
