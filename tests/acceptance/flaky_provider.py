"""A provider for the autoscaler's tests: the real ``local`` provider, whose first two creates
fail as a cloud at its quota does (RGRID_AUTOSCALE_PROVIDER=tests.acceptance.flaky_provider:
FlakyLocalProvider, loaded by the server as a provider of one's own)."""

from __future__ import annotations

from rgrid import errors
from rgrid.autoscaler import ProviderNode
from rgrid.autoscaler.local import LocalProvider
from rgrid.autoscaler.policy import NodeKind
from rgrid.settings import ServerSettings

REFUSALS = 2


class FlakyLocalProvider(LocalProvider):
    name = "local"

    def __init__(self, settings: ServerSettings, join_address: str) -> None:
        super().__init__(
            settings.home / "nodes",
            join_address=join_address,
            cpu_price_micros=settings.hourly_price_micros,
            billing_period_s=settings.billing_period_s,
        )
        self.refused = 0

    async def create(self, kind: NodeKind, name: str) -> ProviderNode:
        if self.refused < REFUSALS:
            self.refused += 1
            raise errors.ProviderError(f"quota exceeded: the test refuses create {self.refused}")
        return await super().create(kind, name)
