"""The runner pipeline against a fake control plane (issue 15): the real sandbox and
environment, no grid. Outputs are collected (not the untouched inputs), limits end a run with
their failure class, log lines arrive in order with their streams, and a cancel stops it."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.fake_plane import FakeControlPlane

from rgrid import domain
from rgrid.digests import of_tree
from rgrid.domain import ExecutionState, FailureClass
from rgrid.runner import RunnerConfig
from rgrid.runner.configure import runner_config
from rgrid.runner.pipeline import run_execution
from rgrid.settings import WorkerSettings


@pytest.fixture(scope="module")
def worker_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One worker home for the module: its base environment is built once."""
    return tmp_path_factory.mktemp("worker")


@pytest.fixture
def config(worker_home: Path) -> Iterator[RunnerConfig]:
    # a configuration per test: its environment cache holds locks of the test's event loop
    yield runner_config(WorkerSettings(home=worker_home))


def spec_of(
    plane: FakeControlPlane, script: str, *, files: dict[str, bytes] | None = None, **fields: object
) -> domain.ExecutionSpec:
    inputs = [plane.add("main.py", script.encode())]
    inputs += [plane.add(path, data) for path, data in (files or {}).items()]
    spec = domain.ExecutionSpec(
        execution_id=f"exec_{id(plane):x}",
        account_id="acct_test",
        script="main.py",
        args=(),
        env={},
        inputs=tuple(inputs),
        timeout_s=60,
        memory_bytes=512 * 1024**2,
        network=False,
        attempt=1,
    )
    return dataclasses.replace(spec, **fields)  # type: ignore[arg-type]


async def run(
    spec: domain.ExecutionSpec, plane: FakeControlPlane, config: RunnerConfig
) -> domain.Outcome:
    return await run_execution(spec, plane, config, asyncio.Event())


COLLECT = """\
import os
data = open("data/in.txt").read()
os.makedirs("out/empty", exist_ok=True)
open("out/r.txt", "w").write(data.upper())
print("done")
"""


async def test_outputs_are_what_the_run_made_and_inputs_stay_out(
    config: RunnerConfig,
) -> None:
    plane = FakeControlPlane()
    spec = spec_of(plane, COLLECT, files={"data/in.txt": b"hello\n"})

    outcome = await run(spec, plane, config)

    assert (outcome.state, outcome.exit_code, outcome.failure_class) == (
        ExecutionState.SUCCEEDED,
        0,
        None,
    )
    assert plane.outputs == {"out/r.txt": b"HELLO\n"}
    assert [ref.path for ref in outcome.outputs] == ["out/r.txt"]
    assert outcome.output_dirs == ("out/empty",)
    assert plane.lines() == [("stdout", "done\n")]


async def test_a_tree_is_materialised_below_the_named_files(config: RunnerConfig) -> None:
    plane = FakeControlPlane()
    files = [plane.add(f"data/t{i}.txt", f"tree {i}\n".encode()) for i in range(3)]
    tree = domain.Tree(
        of_tree(((f.path, f.digest, f.size) for f in files), ["models"]),
        tuple(files),
        ("models",),
    )
    script = "import os\nprint(open('data/t2.txt').read().strip(), os.listdir('models'))\n"
    first = spec_of(plane, script, tree=tree)

    outcome = await run(first, plane, config)
    second = FakeControlPlane(plane.blobs)  # another execution of the same tree
    again = await run(dataclasses.replace(first, execution_id="exec_again"), second, config)

    assert outcome.state is ExecutionState.SUCCEEDED and again.state is ExecutionState.SUCCEEDED
    assert plane.lines() == second.lines() == [("stdout", "tree 2 []\n")]
    assert plane.outputs == second.outputs == {}  # the tree came back as it went: no outputs
    assert sorted(plane.fetched) == ["data/t0.txt", "data/t1.txt", "data/t2.txt", "main.py"]
    if outcome.reads is not None:  # observed: the tree is a shared layer, built once
        assert second.fetched == ["main.py"]
        assert "data/t2.txt" in outcome.reads.read and "data/t0.txt" not in outcome.reads.read


async def test_log_lines_arrive_in_order_with_their_streams(config: RunnerConfig) -> None:
    plane = FakeControlPlane()
    script = (
        "import sys\n"
        "for i in range(40):\n"
        "    print(i, file=sys.stderr if i % 3 == 0 else sys.stdout, flush=True)\n"
    )

    outcome = await run(spec_of(plane, script), plane, config)

    assert outcome.state is ExecutionState.SUCCEEDED
    # each stream in its order (two pipes: their interleaving is the kernel's), every line
    # numbered once and consecutively (the fake plane checks that as the grid does)
    for stream in ("stdout", "stderr"):
        expected = [f"{i}\n" for i in range(40) if (i % 3 == 0) == (stream == "stderr")]
        assert [text for kind, text in plane.lines() if kind == stream] == expected
    assert len(plane.lines()) == 40


async def test_limits_end_a_run_with_their_class(config: RunnerConfig) -> None:
    plane = FakeControlPlane()
    sleeper = spec_of(plane, "import time\nprint('start', flush=True)\ntime.sleep(30)\n")
    timed_out = await run(dataclasses.replace(sleeper, timeout_s=1.0), plane, config)
    assert timed_out.failure_class is FailureClass.TIMEOUT

    plane = FakeControlPlane()
    writer = (
        "import os\nos.makedirs('out')\nfor i in range(5):\n    open(f'out/{i}', 'w').write('x')\n"
    )
    few = dataclasses.replace(config, max_output_files=2)
    over = await run(spec_of(plane, writer), plane, few)
    assert (over.state, over.failure_class) == (ExecutionState.FAILED, FailureClass.OUTPUT_LIMIT)
    assert len(plane.outputs) == 2

    plane = FakeControlPlane()
    failing = await run(spec_of(plane, "import sys\nsys.exit(7)\n"), plane, config)
    assert (failing.state, failing.exit_code, failing.failure_class) == (
        ExecutionState.FAILED,
        7,
        FailureClass.SCRIPT_ERROR,
    )


async def test_a_cancel_stops_the_run(config: RunnerConfig) -> None:
    plane = FakeControlPlane()
    spec = spec_of(plane, "import time\nprint('started', flush=True)\ntime.sleep(60)\n")
    cancel = asyncio.Event()
    task = asyncio.create_task(run_execution(spec, plane, config, cancel))
    for _ in range(300):  # until the script has started
        if plane.lines():
            break
        await asyncio.sleep(0.05)
    assert plane.lines() == [("stdout", "started\n")]

    cancel.set()
    outcome = await asyncio.wait_for(task, 20)

    assert outcome.state is ExecutionState.CANCELLED


async def test_a_lost_input_fails_the_run_as_an_input_error(config: RunnerConfig) -> None:
    plane = FakeControlPlane()
    spec = spec_of(plane, "print(1)\n", files={"data/gone.txt": b"gone\n"})
    del plane.blobs[spec.inputs[1].digest]

    outcome = await run(spec, plane, config)

    assert (outcome.state, outcome.failure_class) == (
        ExecutionState.FAILED,
        FailureClass.INPUT_ERROR,
    )
    assert "lost" in (outcome.cause or "")


def test_the_fake_plane_checks_what_the_grid_checks(tmp_path: Path) -> None:
    plane = FakeControlPlane()
    ref = plane.add("a.txt", b"a")
    asyncio.run(plane.fetch_input(ref, tmp_path / "a.txt"))
    assert (tmp_path / "a.txt").read_bytes() == b"a"
    segment = domain.LogSegment(2, 1, domain.Stream.STDOUT, datetime.now(UTC), "x\n", 1)
    asyncio.run(plane.append_logs([segment]))
    with pytest.raises(AssertionError):
        asyncio.run(plane.append_logs([segment]))  # line 2 again: not consecutive
