"""Machines that come and go with the queue (SPEC §10): one ``Provider`` Protocol, one module per
implementation (``local``: Ray worker nodes as processes on this host; ``hetzner``: Hetzner
Cloud servers), and the policy deciding when (``policy``), pure so the simulator runs it too.

A node is named by the grid (``rgrid-…``) when it is created; it joins the Ray cluster with a
custom resource ``rgrid-node-<name>`` so the executor knows which of the provider's machines
each Ray node is, and that name is its worker id (its executions and billing periods).
"""

from __future__ import annotations

import dataclasses
import importlib
import secrets
from datetime import datetime
from typing import Protocol

from rgrid import errors
from rgrid.autoscaler.policy import NodeKind, ScalingConfig
from rgrid.settings import ServerSettings

#: the Ray custom resource naming a node: ``rgrid-node-<name>`` (quantity 1)
NODE_RESOURCE_PREFIX = "rgrid-node-"


@dataclasses.dataclass(frozen=True)
class ProviderNode:
    """A machine the provider runs for the grid."""

    #: the provider's own id for it (a Hetzner server id; the name for ``local``)
    provider_id: str
    #: the grid's name for it: its worker id and its Ray resource
    name: str
    kind: str
    hourly_price_micros: int
    billing_period_s: float
    #: when the provider created it: its billing periods run from here
    created_at: datetime


class Provider(Protocol):
    """Creates, lists and deletes the grid's machines. Methods raise ``errors.ProviderError``
    when the provider refuses or cannot be reached (the autoscaler backs off and retries);
    nothing they log or raise contains a credential."""

    name: str

    #: the kind it creates when RGRID_AUTOSCALE_KIND names none
    default_kind: str

    async def kinds(self) -> dict[str, NodeKind]:
        """The kinds of machine it offers, by name, with their slots and price."""

    async def create(self, kind: NodeKind, name: str) -> ProviderNode:
        """Start a machine of ``kind`` that joins the cluster as ``name``."""

    async def nodes(self) -> list[ProviderNode]:
        """The grid's machines that exist now (found again after a restart by label)."""

    async def delete(self, node: ProviderNode) -> None:
        """Stop and delete the machine; one already gone is no error."""


def from_settings(settings: ServerSettings, join_address: str) -> Provider:
    """The provider ``RGRID_AUTOSCALE_PROVIDER`` names, whose nodes join the cluster at
    ``join_address``: ``local``, ``hetzner``, or ``MODULE:CLASS`` (a class of your own taking
    ``(settings, join_address)``). ``InvalidRequest`` for anything else or a missing token."""
    name = settings.autoscale_provider or ""
    if name == "local":
        from rgrid.autoscaler.local import LocalProvider

        return LocalProvider(
            settings.home / "nodes",
            join_address=join_address,
            cpu_price_micros=settings.hourly_price_micros,
            billing_period_s=settings.billing_period_s,
        )
    if name == "hetzner":
        from rgrid.autoscaler import hetzner

        return hetzner.from_settings(settings, join_address)
    module_name, _, class_name = name.partition(":")
    if module_name and class_name:
        try:
            made: Provider = getattr(importlib.import_module(module_name), class_name)(
                settings, join_address
            )
        except (ImportError, AttributeError) as exc:
            raise errors.InvalidRequest(
                f"autoscaler provider {name!r} cannot be loaded: {exc}", hint=PROVIDERS_HINT
            ) from exc
        return made
    raise errors.InvalidRequest(f"unknown autoscaler provider {name!r}", hint=PROVIDERS_HINT)


PROVIDERS_HINT = "RGRID_AUTOSCALE_PROVIDER=local, hetzner, or MODULE:CLASS for one of your own"


def scaling_config(
    settings: ServerSettings, kinds: dict[str, NodeKind], default: str
) -> ScalingConfig:
    """The policy's configuration from the settings, checked against the kinds the provider
    offers (``default``: the kind used when none is set); ``InvalidRequest`` when it cannot
    work."""
    kind_name = settings.autoscale_kind or default
    if kind_name not in kinds:
        offered = ", ".join(sorted(kinds)[:20]) or "none"
        raise errors.InvalidRequest(
            f"the autoscaler's provider offers no machine of kind {kind_name!r}",
            hint=f"set RGRID_AUTOSCALE_KIND to one of: {offered}",
        )
    if settings.autoscale_max_nodes < settings.autoscale_min_nodes:
        raise errors.InvalidRequest(
            f"RGRID_AUTOSCALE_MAX_NODES ({settings.autoscale_max_nodes}) is below "
            f"RGRID_AUTOSCALE_MIN_NODES ({settings.autoscale_min_nodes})",
            hint="the maximum must be at least the minimum",
        )
    return ScalingConfig(
        kind=kinds[kind_name],
        min_nodes=settings.autoscale_min_nodes,
        max_nodes=settings.autoscale_max_nodes,
        max_hourly_micros=settings.autoscale_max_hourly_micros,
        horizon_s=settings.autoscale_horizon_s,
        join_timeout_s=settings.autoscale_join_timeout_s,
        heartbeat_timeout_s=settings.autoscale_heartbeat_timeout_s,
        drain_before_end_s=settings.autoscale_drain_before_end_s,
        default_duration_s=settings.autoscale_default_duration_s,
    )


def node_name() -> str:
    """A new node's name: unique, short, valid as a host name and a Ray resource."""
    return f"rgrid-{secrets.token_hex(4)}"


def node_resource(name: str) -> str:
    return f"{NODE_RESOURCE_PREFIX}{name}"


__all__ = [
    "NODE_RESOURCE_PREFIX",
    "NodeKind",
    "Provider",
    "ProviderNode",
    "from_settings",
    "node_name",
    "scaling_config",
]
