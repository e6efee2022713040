"""The contract every executor keeps (``rgrid.executor.Executor``), run against each one: the
local executor, and the Ray one on a real two-node cluster (its nodes reach the fake planes
over HTTP, ``ray_plane``). Executions are real (the runner, the sandbox);
the grid is a fake control plane, so only the executor's own promises are under test:
``on_done`` awaited exactly once per started execution, with its outcome; slots taken while
running and given back after; ``cancel`` stops a running execution and says whether it was
there; ``close`` stops what still runs and waits until each has reported."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from tests.contract.ray_plane import ContractRayExecutor, PlaneServer
from tests.fake_plane import FakeControlPlane
from tests.raycluster import RayCluster

from rgrid import domain
from rgrid.domain import ExecutionState
from rgrid.executor import Executor
from rgrid.executor.local import LocalExecutor
from rgrid.runner import RunnerConfig
from rgrid.runner.configure import runner_config
from rgrid.settings import WorkerSettings

SLOTS = 2


@pytest.fixture(scope="module")
def worker_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One worker home for the module: its base environment is built once."""
    return tmp_path_factory.mktemp("worker")


@pytest.fixture
def config(worker_home: Path) -> Iterator[RunnerConfig]:
    # a configuration per test: its environment cache holds locks of the test's event loop
    yield runner_config(WorkerSettings(home=worker_home))


@pytest.fixture(scope="module")
def ray_setup(ray_cluster: RayCluster) -> Iterator[tuple[str, PlaneServer]]:
    """The session's Ray cluster (SLOTS one-CPU nodes) and the HTTP server of the fake planes."""
    assert len(ray_cluster.nodes) == SLOTS
    with PlaneServer() as planes:
        yield ray_cluster.address, planes


async def _local(config: RunnerConfig, request: pytest.FixtureRequest) -> Executor:
    return LocalExecutor(slots=SLOTS, config=config)


async def _ray(config: RunnerConfig, request: pytest.FixtureRequest) -> Executor:
    address, planes = request.getfixturevalue("ray_setup")
    return await ContractRayExecutor(address, planes).ready(SLOTS)


Factory = Callable[[RunnerConfig, pytest.FixtureRequest], Awaitable[Executor]]
#: by module of ``rgrid.executor`` (``raynode`` is the Ray executor's node side)
FACTORIES: dict[str, Factory] = {"local": _local, "ray": _ray}
NOT_EXECUTORS = {"raynode"}


@pytest.fixture(params=sorted(FACTORIES))
async def executor(request: pytest.FixtureRequest, config: RunnerConfig) -> AsyncIterator[Executor]:
    made = await FACTORIES[request.param](config, request)
    yield made
    await made.close()


class Reports:
    """``on_done``: every (execution id, outcome) it was called with, and a wait for them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, domain.Outcome]] = []
        self._changed = asyncio.Event()

    async def __call__(self, spec: domain.ExecutionSpec, outcome: domain.Outcome) -> None:
        self.calls.append((spec.execution_id, outcome))
        self._changed.set()

    async def until(self, count: int, timeout: float = 60.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.calls) < count:
                self._changed.clear()
                await self._changed.wait()

    def outcome(self, execution_id: str) -> domain.Outcome:
        (found,) = [outcome for done, outcome in self.calls if done == execution_id]
        return found


def spec_of(plane: FakeControlPlane, name: str, script: str) -> domain.ExecutionSpec:
    return domain.ExecutionSpec(
        execution_id=f"exec_{name}",
        account_id="acct_contract",
        script="main.py",
        args=(),
        env={},
        inputs=(plane.add("main.py", script.encode()),),
        timeout_s=60,
        memory_bytes=512 * 1024**2,
        network=False,
        attempt=1,
    )


SLEEPER = "import time\nprint('up', flush=True)\ntime.sleep(60)\n"


async def started(plane: FakeControlPlane) -> None:
    """Until the script has printed its first line."""
    async with asyncio.timeout(60):
        while not plane.lines():
            await asyncio.sleep(0.05)


async def test_on_done_is_awaited_once_with_the_outcome(executor: Executor) -> None:
    reports = Reports()
    plane = FakeControlPlane()
    spec = spec_of(plane, "ok", "open('out.txt', 'w').write('made')\nprint('hi')\n")

    executor.start(spec, plane, reports)
    await reports.until(1)
    await asyncio.sleep(0.2)  # a second call would come now

    assert [execution_id for execution_id, _ in reports.calls] == ["exec_ok"]
    outcome = reports.outcome("exec_ok")
    assert (outcome.state, outcome.exit_code) == (ExecutionState.SUCCEEDED, 0)
    assert [ref.path for ref in outcome.outputs] == ["out.txt"]
    assert plane.outputs == {"out.txt": b"made"} and plane.lines() == [("stdout", "hi\n")]
    assert executor.free_slots() == SLOTS and executor.running() == []


async def test_slots_are_taken_while_running_and_given_back(executor: Executor) -> None:
    reports = Reports()
    planes = [FakeControlPlane() for _ in range(SLOTS)]
    specs = [spec_of(plane, f"s{i}", SLEEPER) for i, plane in enumerate(planes)]
    started_before = executor.started

    for spec, plane in zip(specs, planes, strict=True):
        executor.start(spec, plane, reports)
    for plane in planes:
        await started(plane)

    assert executor.free_slots() == 0
    assert sorted(executor.running()) == sorted(spec.execution_id for spec in specs)
    assert executor.started == started_before + SLOTS
    for spec in specs:
        assert executor.cancel(spec.execution_id)
    await reports.until(SLOTS)
    assert executor.free_slots() == SLOTS and executor.running() == []


async def test_cancel_stops_a_running_execution_and_says_whether_it_was_there(
    executor: Executor,
) -> None:
    reports = Reports()
    plane = FakeControlPlane()
    spec = spec_of(plane, "long", SLEEPER)
    executor.start(spec, plane, reports)
    await started(plane)

    assert executor.cancel("exec_not_here") is False
    assert executor.cancel(spec.execution_id) is True
    await reports.until(1, timeout=30)

    assert reports.outcome(spec.execution_id).state is ExecutionState.CANCELLED
    assert executor.cancel(spec.execution_id) is False  # ended: no longer there


async def test_close_stops_everything_and_waits_for_every_report(
    config: RunnerConfig, request: pytest.FixtureRequest
) -> None:
    for name, factory in FACTORIES.items():
        made = await factory(config, request)
        reports = Reports()
        planes = [FakeControlPlane() for _ in range(SLOTS)]
        for i, plane in enumerate(planes):
            made.start(spec_of(plane, f"{name}{i}", SLEEPER), plane, reports)
        for plane in planes:
            await started(plane)

        await asyncio.wait_for(made.close(), 30)

        counts = collections.Counter(execution_id for execution_id, _ in reports.calls)
        assert counts == {f"exec_{name}{i}": 1 for i in range(SLOTS)}, name
        assert {outcome.state for _, outcome in reports.calls} == {ExecutionState.CANCELLED}
        assert made.running() == []


def test_every_executor_is_in_the_suite() -> None:
    """A new executor module must be added to FACTORIES (and so run this contract)."""
    import pkgutil

    import rgrid.executor

    modules = {m.name for m in pkgutil.iter_modules(rgrid.executor.__path__)}
    assert modules - NOT_EXECUTORS == set(FACTORIES), modules
