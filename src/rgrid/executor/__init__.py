"""How the grid hands claimed executions to workers: one Protocol, one module per implementation.

The executor never touches the store: it runs a spec against a ``ControlPlane`` and calls
``on_done`` with the outcome; the dispatcher service owns claiming, leases and state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import NamedTuple, Protocol
from urllib.parse import parse_qs, urlparse

from rgrid import domain, errors
from rgrid.runner import ControlPlane, RunnerConfig

DoneCallback = Callable[[domain.ExecutionSpec, domain.Outcome], Awaitable[None]]


class Placement(NamedTuple):
    """A worker of the executor's own with room for one more execution."""

    worker: str
    #: the Python minor versions it offers ("3.11"): it claims only what it can run
    pythons: frozenset[str]


class Executor(Protocol):
    name: str
    #: executions run on workers of the executor's own (Ray nodes, see ``workers``), not in
    #: the dispatcher's: the server is then no worker itself
    remote: bool
    #: executions started so far (for /metrics)
    started: int
    #: environments its own workers built (for /metrics; 0 when they are the server's)
    env_builds: int

    @property
    def slots(self) -> int:
        """How many executions it runs at once when all is free."""

    async def open(self) -> None:
        """Get ready to run (Ray: join the cluster); ``InvalidRequest`` when it cannot."""

    def free_slots(self) -> int:
        """How many more executions ``start`` accepts right now."""

    def place(self) -> list[Placement]:
        """Workers of its own with room for one more execution, best first, to claim for
        (``ExecutionSpec.worker`` then says where ``start`` runs it); empty for an executor
        that runs in the dispatcher's own worker, or when no node has room."""

    def start(self, spec: domain.ExecutionSpec, plane: ControlPlane, on_done: DoneCallback) -> None:
        """Begin running ``spec``; ``on_done`` is awaited exactly once with its outcome."""

    def cancel(self, execution_id: str) -> bool:
        """Ask a running execution to stop (its process group is killed); False if not here."""

    def running(self) -> list[str]:
        """Ids of the executions running here."""

    def workers(self, now: datetime) -> list[domain.Worker]:
        """Workers of their own this executor runs executions on (Ray: its nodes), to be put
        on record; empty when executions run in the dispatcher's own worker."""

    async def close(self) -> None:
        """Cancel everything still running and wait for it to report."""


def from_url(
    url: str,
    config: RunnerConfig,
    *,
    slots: int = 1,
    control_url: str = "",
    credential: Callable[[str, int, str], str] | None = None,
    price: tuple[int, float] = (0, 3600.0),
) -> Executor:
    """The executor a setting names (``RGRID_EXECUTOR``): ``local`` or ``local://?slots=N``
    → ``LocalExecutor`` (``slots``: when the URL gives none); ``ray://HOST:PORT`` →
    ``RayExecutor`` on that cluster, whose nodes reach the control plane at ``control_url``
    with the attempt credentials ``credential`` makes, at ``price`` (hourly micros, billing
    period) per node. Anything else is ``InvalidRequest``."""
    parsed = urlparse(url if "://" in url else f"{url}://")
    if parsed.scheme == "ray":
        from rgrid.executor.ray import RayExecutor, require_ray

        require_ray()
        if not parsed.netloc or credential is None:
            raise errors.InvalidRequest(
                f"executor URL {url!r}: give the Ray cluster's address",
                hint="RGRID_EXECUTOR=ray://HOST:PORT (the head's GCS port, 6379 by default)",
            )
        return RayExecutor(
            parsed.netloc, control_url=control_url, credential=credential, price=price
        )
    if parsed.scheme == "local":
        from rgrid.executor.local import LocalExecutor

        query = parse_qs(parsed.query)
        try:
            slots = int(query.get("slots", [str(slots)])[0])
        except ValueError:
            slots = 0
        if slots < 1:
            raise errors.InvalidRequest(f"executor URL {url!r}: slots must be a whole number >= 1")
        return LocalExecutor(slots=slots, config=config)
    raise errors.InvalidRequest(
        f"unsupported executor {url!r}",
        hint="RGRID_EXECUTOR=local (or local://?slots=N) or ray://HOST:PORT",
    )


__all__ = ["DoneCallback", "Executor", "from_url"]
