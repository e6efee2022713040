"""``InMemoryProvider``: machines that exist only as entries of a dict, for tests of the
autoscaler's loop (what the loop does with the provider's answers, its errors and restarts).
Its failures are scripted: ``fail_creates`` refusals before creating works again."""

from __future__ import annotations

from datetime import UTC, datetime

from rgrid import errors
from rgrid.autoscaler import ProviderNode
from rgrid.autoscaler.policy import NodeKind


class InMemoryProvider:
    name = "memory"
    default_kind = "small"

    def __init__(self, kinds: dict[str, NodeKind] | None = None) -> None:
        self.offered = kinds or {"small": NodeKind("small", 1, 3_600_000, 3600.0)}
        self.machines: dict[str, ProviderNode] = {}
        self.deleted: list[str] = []
        #: how many of the next creates fail (as at a quota)
        self.fail_creates = 0
        #: listing and deleting fail while set (the API is down)
        self.down = False

    async def kinds(self) -> dict[str, NodeKind]:
        self._check()
        return dict(self.offered)

    async def create(self, kind: NodeKind, name: str) -> ProviderNode:
        self._check()
        if self.fail_creates:
            self.fail_creates -= 1
            raise errors.ProviderError("quota exceeded")
        node = ProviderNode(
            provider_id=f"m-{len(self.machines) + len(self.deleted) + 1}",
            name=name,
            kind=kind.name,
            hourly_price_micros=kind.hourly_price_micros,
            billing_period_s=kind.billing_period_s,
            created_at=datetime.now(UTC),
        )
        self.machines[name] = node
        return node

    async def nodes(self) -> list[ProviderNode]:
        self._check()
        return list(self.machines.values())

    async def delete(self, node: ProviderNode) -> None:
        self._check()
        if self.machines.pop(node.name, None) is not None:
            self.deleted.append(node.name)

    def _check(self) -> None:
        if self.down:
            raise errors.ProviderError("the provider's API cannot be reached")
