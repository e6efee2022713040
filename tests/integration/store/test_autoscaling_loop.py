"""The autoscaler's loop on SQLite and PostgreSQL: what it does with the queue, the provider's
answers and the cluster, what it records, and how a restarted server takes its nodes up again.
The provider is the package's in-memory one; the cluster a stand-in for the Ray executor (the
real ones run in tests/acceptance/test_autoscaling.py)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import pytest
from tests.integration.store.conftest import ADMIN_KEY
from tests.integration.store.helpers import submit_script

from rgrid import domain, errors, store
from rgrid.autoscaler import ProviderNode
from rgrid.autoscaler.memory import InMemoryProvider
from rgrid.autoscaler.policy import Create, Drain, NodeKind, Terminate, Undrain
from rgrid.executor import from_url
from rgrid.executor.ray import Member
from rgrid.runner.configure import runner_config
from rgrid.services import Grid, autoscaling, billing, utcnow
from rgrid.services import accounts as account_service
from rgrid.services.autoscaling import Autoscaler
from rgrid.store import workers as worker_repo


class StandInCluster:
    """What the autoscaler sees of the Ray executor: the named nodes in the cluster."""

    def __init__(self) -> None:
        self.autoscaled = False
        self.owned: frozenset[str] = frozenset()
        self.joined: dict[str, Member] = {}
        self.draining: set[str] = set()

    def members(self) -> dict[str, Member]:
        return dict(self.joined)

    def set_draining(self, name: str, draining: bool) -> None:
        (self.draining.add if draining else self.draining.discard)(name)

    def join(self, name: str, busy: int = 0) -> None:
        self.joined[name] = Member(name, "10.0.0.7", 1, busy, None, "bubblewrap", ("python3.11",))


@pytest.fixture
def scaled_grid(grid: Grid) -> Grid:
    grid.settings = grid.settings.model_copy(
        update={"autoscale_max_nodes": 2, "autoscale_horizon_s": 10.0}
    )
    return grid


async def queue(grid: Grid, count: int) -> None:
    admin = await account_service.authenticate(grid, ADMIN_KEY)
    for n in range(count):
        await submit_script(grid, admin, f"print({n})")


async def records(grid: Grid) -> dict[str, domain.Worker]:
    async with store.transaction(grid.sessions) as session:
        found = await worker_repo.of_provider(session, "memory", utcnow() - timedelta(days=1))
    return {w.id: w for w in found}


async def test_queued_work_creates_nodes_that_become_active_when_they_join(
    scaled_grid: Grid,
) -> None:
    provider, cluster = InMemoryProvider(), StandInCluster()
    scaler = Autoscaler(scaled_grid, cluster, provider)
    await scaler.open()
    assert cluster.autoscaled
    await queue(scaled_grid, 5)
    plan = await scaler.tick()
    assert [a.count for a in plan.actions if isinstance(a, Create)] == [2]  # the maximum
    assert len(provider.machines) == 2
    on_record = await records(scaled_grid)
    assert {w.state for w in on_record.values()} == {"provisioning"}  # type: ignore[attr-defined]
    first = next(iter(provider.machines))
    cluster.join(first)
    await scaler.tick()
    on_record = await records(scaled_grid)
    joined = on_record[first]
    assert joined.state == "active" and joined.node == "10.0.0.7"  # type: ignore[attr-defined]
    assert joined.provider_id == provider.machines[first].provider_id  # type: ignore[attr-defined]
    assert cluster.owned == frozenset(provider.machines)
    assert scaled_grid.autoscaler is not None
    assert "5 queued" in scaled_grid.autoscaler.status


async def test_a_restarted_server_takes_up_the_nodes_it_made(scaled_grid: Grid) -> None:
    provider, cluster = InMemoryProvider(), StandInCluster()
    before = Autoscaler(scaled_grid, cluster, provider)
    await before.open()
    await queue(scaled_grid, 5)
    await before.tick()
    made = set(provider.machines)
    for name in made:
        cluster.join(name, busy=1)
    await before.tick()
    await before.close()

    after_cluster = StandInCluster()
    after = Autoscaler(scaled_grid, after_cluster, provider)
    await after.open()
    # the executor has not seen the cluster yet: a node on record is not dead for that
    plan = await after.tick()
    assert not [a for a in plan.actions if not isinstance(a, Create)], plan
    for name in made:
        after_cluster.join(name, busy=1)
    await after.tick()
    assert set(provider.machines) == made, "no node bought twice"
    assert {w.state for w in (await records(scaled_grid)).values()} == {"active"}  # type: ignore[attr-defined]


async def test_a_refusing_provider_is_backed_off_from_and_its_reason_shown(
    scaled_grid: Grid,
) -> None:
    provider, cluster = InMemoryProvider(), StandInCluster()
    provider.fail_creates = 2
    scaler = Autoscaler(scaled_grid, cluster, provider)
    await scaler.open()
    await queue(scaled_grid, 1)
    await scaler.tick()
    status = scaled_grid.autoscaler
    assert status is not None and status.last_error == "quota exceeded"
    assert status.backoff_until is not None
    first_wait = (status.backoff_until - utcnow()).total_seconds()
    assert 1.0 < first_wait <= 2.0
    await scaler.tick()  # still backing off: nothing asked of the provider
    assert provider.fail_creates == 1 and not provider.machines
    assert "backing off" in scaled_grid.autoscaler.status
    scaler._blocked_until = 0.0  # the clock moved on past the back-off
    await scaler.tick()
    status = scaled_grid.autoscaler
    assert status.backoff_until is not None
    assert 3.0 < (status.backoff_until - utcnow()).total_seconds() <= 4.0  # doubled
    scaler._blocked_until = 0.0
    await scaler.tick()
    assert len(provider.machines) == 1
    assert scaled_grid.autoscaler.backoff_until is None
    assert scaled_grid.autoscaler.last_error == "quota exceeded"  # still shown for a while


async def test_a_machine_gone_at_the_provider_is_dead_and_billed_to_its_last_period(
    scaled_grid: Grid,
) -> None:
    provider, cluster = InMemoryProvider(), StandInCluster()
    scaler = Autoscaler(scaled_grid, cluster, provider)
    await scaler.open()
    await queue(scaled_grid, 1)
    await scaler.tick()
    (name,) = provider.machines
    cluster.join(name)
    await scaler.tick()
    del provider.machines[name]  # killed behind the grid's back
    cluster.joined.clear()
    await scaler.tick()
    record = (await records(scaled_grid))[name]
    assert record.state == "dead" and record.ended_at is not None  # type: ignore[attr-defined]
    assert "gone at the provider" in record.sandbox  # type: ignore[attr-defined]
    assert name in cluster.draining and name not in cluster.owned
    # billing: its first period closes (it ended inside it), and no period after it
    started = record.started_at  # type: ignore[attr-defined]
    later = started + timedelta(hours=5)
    assert await billing.close_periods(scaled_grid, name, started, later) == 1


async def test_a_provider_down_at_start_stops_the_grid_with_a_clear_error(
    scaled_grid: Grid,
) -> None:
    provider = InMemoryProvider()
    provider.down = True
    with pytest.raises(errors.InvalidRequest, match="cannot be used: the provider's API"):
        await Autoscaler(scaled_grid, StandInCluster(), provider).open()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"autoscale_provider": "azure"}, "unknown autoscaler provider 'azure'"),
        (
            {"autoscale_provider": "no_such_module:Provider"},
            "autoscaler provider 'no_such_module:Provider' cannot be loaded",
        ),
        ({"autoscale_provider": "hetzner"}, "RGRID_HETZNER_TOKEN is not set"),
        ({"autoscale_kind": "gpu8"}, "the autoscaler's provider offers no machine of kind 'gpu8'"),
        (
            {"autoscale_min_nodes": 4, "autoscale_max_nodes": 2},
            "RGRID_AUTOSCALE_MAX_NODES (2) is below RGRID_AUTOSCALE_MIN_NODES (4)",
        ),
        (
            {"executor": "local"},
            "the autoscaler adds nodes to a Ray cluster, and the executor is 'local'",
        ),
    ],
)
async def test_a_configuration_that_cannot_work_is_refused_before_anything_starts(
    grid: Grid, settings: dict[str, object], message: str
) -> None:
    """What the server runs at start (``prepare``, then ``open``) with each bad value; no
    machine is made, no cluster joined (the Ray address is never reached)."""
    update = {"executor": "ray://127.0.0.1:9", "autoscale_provider": "local", **settings}
    grid.settings = grid.settings.model_copy(update=update)
    executor = from_url(
        grid.settings.executor,
        runner_config(grid.settings),
        control_url="http://127.0.0.1:1",
        credential=lambda *_: "",
    )
    with pytest.raises(errors.InvalidRequest) as raised:
        scaler = autoscaling.prepare(grid, executor)
        assert scaler is not None
        await scaler.open()
    assert message in raised.value.message
    assert not (grid.settings.home / "nodes").exists()


async def test_a_node_that_ran_nothing_is_idle_cost_of_the_grid_shown_to_admins(
    scaled_grid: Grid,
) -> None:
    """A node on which nothing ran for two whole periods and a started one: three idle
    periods at its price, charged to no account, in an admin's cost report only."""
    scaled_grid.settings = scaled_grid.settings.model_copy(update={"autoscale_min_nodes": 1})
    provider, cluster = InMemoryProvider(), StandInCluster()
    scaler = Autoscaler(scaled_grid, cluster, provider)
    await scaler.open()
    await scaler.tick()  # the minimum: one node, and no work for it
    (name,) = provider.machines
    cluster.join(name)
    await scaler.tick()
    del provider.machines[name]
    cluster.joined.clear()
    await scaler.tick()  # gone
    record = (await records(scaled_grid))[name]
    assert record.ended_at is not None
    started = record.ended_at - timedelta(hours=2.5)  # as if created 2.5 periods before
    async with store.transaction(scaled_grid.sessions) as session:
        await worker_repo.register(session, dataclasses.replace(record, started_at=started))
    later = utcnow() + timedelta(hours=1)
    assert await billing.close_periods(scaled_grid, name, started, later) == 3
    admin = await account_service.authenticate(scaled_grid, ADMIN_KEY)
    price = provider.offered["small"].hourly_price_micros
    assert await billing.idle_report(scaled_grid, admin, None, None) == {
        "periods": 3,
        "micros": 3 * price,
    }
    _, key = await account_service.create_account(scaled_grid, admin, "someone", False)
    someone = await account_service.authenticate(scaled_grid, key)
    assert await billing.idle_report(scaled_grid, someone, None, None) is None


class LateProvider(InMemoryProvider):
    """Machines made ``made_ago`` seconds before they are asked for (so their billing period
    is near its end), and a listing that takes ``listing_s``: a slow tick."""

    def __init__(self, made_ago: float) -> None:
        super().__init__()
        self.made_ago = made_ago
        self.listing_s = 0.0

    async def create(self, kind: NodeKind, name: str) -> ProviderNode:
        made = await super().create(kind, name)
        made = dataclasses.replace(
            made, created_at=made.created_at - timedelta(seconds=self.made_ago)
        )
        self.machines[name] = made
        return made

    async def nodes(self) -> list[ProviderNode]:
        await asyncio.sleep(self.listing_s)
        return await super().nodes()


async def test_a_node_is_not_ended_once_its_next_period_began_while_the_tick_ran(
    scaled_grid: Grid,
) -> None:
    """Planned at the end of its paid period, asked for after it: the next period is paid by
    then, so the node is kept and gets work again; it goes at the end of that one."""
    scaled_grid.settings = scaled_grid.settings.model_copy(update={"autoscale_min_nodes": 1})
    period = 3600.0
    provider, cluster = LateProvider(made_ago=period - 60), StandInCluster()
    scaler = Autoscaler(scaled_grid, cluster, provider)
    await scaler.open()
    await scaler.tick()  # the minimum: one node, in the last minute of its first period
    (name,) = provider.machines
    cluster.join(name)
    scaler._config = dataclasses.replace(scaler.config, min_nodes=0)
    plan = await scaler.tick()
    assert [type(a) for a in plan.actions] == [Drain], plan

    # the period ends 0.2 s into the next tick, which lists the machines for 0.5 s
    moved = utcnow() - timedelta(seconds=period - 0.2)
    provider.machines[name] = dataclasses.replace(provider.machines[name], created_at=moved)
    scaler._nodes[name].machine = provider.machines[name]
    provider.listing_s = 0.5
    plan = await scaler.tick()
    assert [type(a) for a in plan.actions] == [Terminate], plan
    assert provider.deleted == [] and name in provider.machines, "not deleted late"

    provider.listing_s = 0.0
    plan = await scaler.tick()
    assert [(type(a), a.reason) for a in plan.actions] == [(Undrain, "a new billing period began")]
    assert (await records(scaled_grid))[name].state == "active"  # type: ignore[attr-defined]
    assert name not in cluster.draining
