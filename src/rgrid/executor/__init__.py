"""How the grid hands claimed executions to workers: one Protocol, one module per implementation.

The executor never touches the store: it runs a spec against a ``ControlPlane`` and calls
``on_done`` with the outcome; the dispatcher service owns claiming, leases and state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol
from urllib.parse import parse_qs, urlparse

from rgrid import domain, errors
from rgrid.runner import ControlPlane, RunnerConfig

DoneCallback = Callable[[domain.ExecutionSpec, domain.Outcome], Awaitable[None]]


class Executor(Protocol):
    name: str
    slots: int
    #: executions started so far (for /metrics)
    started: int

    def free_slots(self) -> int:
        """How many more executions ``start`` accepts right now."""

    def start(self, spec: domain.ExecutionSpec, plane: ControlPlane, on_done: DoneCallback) -> None:
        """Begin running ``spec``; ``on_done`` is awaited exactly once with its outcome."""

    def cancel(self, execution_id: str) -> bool:
        """Ask a running execution to stop (its process group is killed); False if not here."""

    def running(self) -> list[str]:
        """Ids of the executions running here."""

    async def close(self) -> None:
        """Cancel everything still running and wait for it to report."""


def from_url(url: str, config: RunnerConfig, *, slots: int = 1) -> Executor:
    """The executor a setting names (``RGRID_EXECUTOR``): ``local`` or ``local://?slots=N``
    → ``LocalExecutor`` (``slots``: when the URL gives none). (``ray://`` arrives with the
    scale-out issue.) Anything else is ``InvalidRequest``."""
    parsed = urlparse(url if "://" in url else f"{url}://")
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
        f"unsupported executor {url!r}", hint="RGRID_EXECUTOR=local (or local://?slots=N)"
    )


__all__ = ["DoneCallback", "Executor", "from_url"]
