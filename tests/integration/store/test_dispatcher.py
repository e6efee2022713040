"""The dispatcher with the real local executor and sandbox, on both databases."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.integration.store.conftest import ADMIN_KEY
from tests.integration.store.helpers import bare_spec, submit_script, wait_terminal

from rgrid import domain, errors, store
from rgrid.domain import ArtifactKind, ExecutionState, FailureClass
from rgrid.executor.local import LocalExecutor
from rgrid.runner.configure import runner_config
from rgrid.services import Grid, utcnow
from rgrid.services import accounts as account_service
from rgrid.services import dispatcher as dispatcher_module
from rgrid.services import executions as service
from rgrid.services import logs as log_service
from rgrid.services.dispatcher import Dispatcher
from rgrid.services.outcomes import record_outcome
from rgrid.services.plane import GridControlPlane
from rgrid.store import blobs as blob_repo
from rgrid.store import executions as repo


@pytest.fixture
async def dispatcher(grid: Grid) -> AsyncIterator[Dispatcher]:
    running = Dispatcher(grid, LocalExecutor(slots=2, config=runner_config(grid.settings)))
    running.start()
    yield running
    await running.close()


SCRIPT = """\
import os, sys
print("one")
print("two", file=sys.stderr)
os.makedirs("out", exist_ok=True)
open("out/r.txt", "w").write(open("data/in.txt").read().upper())
sys.exit(int(os.environ.get("CODE", "0")))
"""


async def test_runs_to_success_with_logs_and_outputs(grid: Grid, dispatcher: Dispatcher) -> None:
    admin = await account_service.authenticate(grid, ADMIN_KEY)
    made = await submit_script(grid, admin, SCRIPT, files={"data/in.txt": b"abc"})
    done = await wait_terminal(grid, admin, made.id)
    assert done.state is ExecutionState.SUCCEEDED and done.exit_code == 0
    assert done.attempt == 1 and done.worker == f"{grid.settings.worker_name}:{os.getpid()}"
    assert done.started_at is not None and done.finished_at is not None
    lines = (await log_service.read_logs(grid, admin, made.id, after=0, limit=100)).lines
    assert [(line.seq, line.stream.value, line.text) for line in lines] == [
        (1, "stdout", "one\n"),
        (2, "stderr", "two\n"),
    ]
    _, outputs = await service.list_artifacts(grid, admin, made.id, ArtifactKind.OUTPUT)
    assert [a.path for a in outputs] == ["out/r.txt"]  # the unchanged input is not an output
    _, stream = await service.open_output(grid, admin, made.id, "out/r.txt")
    assert b"".join([chunk async for chunk in stream]) == b"ABC"


async def test_script_error_has_class_cause_and_exit_code(
    grid: Grid, dispatcher: Dispatcher
) -> None:
    admin = await account_service.authenticate(grid, ADMIN_KEY)
    made = await submit_script(grid, admin, SCRIPT, files={"data/in.txt": b"x"}, env={"CODE": "3"})
    done = await wait_terminal(grid, admin, made.id)
    assert done.state is ExecutionState.FAILED
    assert done.failure_class is FailureClass.SCRIPT_ERROR and done.exit_code == 3


async def test_cancel_running_kills_it(grid: Grid, dispatcher: Dispatcher) -> None:
    admin = await account_service.authenticate(grid, ADMIN_KEY)
    made = await submit_script(grid, admin, "import time\nprint('go')\ntime.sleep(60)\n")
    lines = (await log_service.read_logs(grid, admin, made.id, after=0, limit=10, wait_s=20)).lines
    assert lines and lines[0].text == "go\n"
    await service.cancel(grid, admin, made.id)
    done = await wait_terminal(grid, admin, made.id, timeout=10)
    assert done.state is ExecutionState.CANCELLED


async def test_expired_lease_is_retried_then_final(grid: Grid, dispatcher: Dispatcher) -> None:
    admin = await account_service.authenticate(grid, ADMIN_KEY)
    made = await submit_script(grid, admin, "print(1)", max_retries=1)
    await wait_terminal(grid, admin, made.id)

    async def lose_it() -> None:
        """Make it look as if a worker died mid-run: running, lease in the past."""
        async with store.transaction(grid.sessions) as session:
            row = await repo.get_row(session, made.id)
            assert row is not None
            row.state = ExecutionState.RUNNING.value
            row.worker = "gone"
            row.lease_expires_at = datetime.now(UTC) - timedelta(seconds=1)

    await lose_it()
    await dispatcher.recover_expired()
    retrying = await service.get(grid, admin, made.id)
    assert retrying.state is ExecutionState.RETRYING  # attempt 1 of 1+1 was lost
    assert retrying.retry_reason is not None and retrying.retry_reason.startswith("worker_lost")
    again = await wait_terminal(grid, admin, made.id)
    assert again.state is ExecutionState.SUCCEEDED and again.attempt == 2
    await lose_it()  # now out of retries: final
    await dispatcher.recover_expired()
    lost = await service.get(grid, admin, made.id)
    assert lost.state is ExecutionState.FAILED and lost.failure_class is FailureClass.WORKER_LOST


async def test_a_dispatcher_woken_as_it_closes_still_closes(grid: Grid) -> None:
    """Closing the server stops its dispatcher even when work is signalled in the same instant
    (a busy batch signals all the time): on Python 3.11 such a wake-up swallowed the cancel,
    and the dispatcher went on claiming while the server's shutdown waited for it forever."""
    running = Dispatcher(grid, LocalExecutor(slots=1, config=runner_config(grid.settings)))
    running.start()
    await asyncio.sleep(0.3)  # nothing queued: it waits for a wake-up
    grid.wake_dispatcher()
    closing = asyncio.create_task(running.close())
    done, _ = await asyncio.wait({closing}, timeout=10)
    assert done == {closing}, "the dispatcher did not close"
    closing.result()


async def expire_lease(grid: Grid, execution_id: str) -> None:
    """As a stall longer than the lease leaves it: still running, its lease in the past."""
    async with store.transaction(grid.sessions) as session:
        row = await repo.get_row(session, execution_id)
        assert row is not None and row.state == ExecutionState.RUNNING.value
        row.lease_expires_at = utcnow() - timedelta(seconds=1)


async def test_a_lease_that_ran_out_while_this_server_ran_it_is_renewed_not_lost(
    grid: Grid, dispatcher: Dispatcher
) -> None:
    """The server running an execution in its own slot stalled past the lease: its recovery
    renews the lease, and the attempt that runs goes on as the only one."""
    admin = await account_service.authenticate(grid, ADMIN_KEY)
    script = "import time\nprint('start', flush=True)\ntime.sleep(1.5)\nprint('end')\n"
    made = await submit_script(grid, admin, script)
    lines = (await log_service.read_logs(grid, admin, made.id, after=0, limit=10, wait_s=20)).lines
    assert [line.text for line in lines] == ["start\n"]
    await expire_lease(grid, made.id)
    assert await dispatcher.recover_expired() == 0
    running = await service.get(grid, admin, made.id)
    assert running.state is ExecutionState.RUNNING and running.attempt == 1
    assert running.lease_expires_at is not None and running.lease_expires_at > utcnow()
    done = await wait_terminal(grid, admin, made.id)
    assert done.state is ExecutionState.SUCCEEDED and done.attempt == 1
    lines = (await log_service.read_logs(grid, admin, made.id, after=0, limit=10)).lines
    assert [line.text for line in lines] == ["start\n", "end\n"]


async def test_a_lease_that_ran_out_while_the_outcome_was_recorded_is_not_lost(
    grid: Grid, dispatcher: Dispatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The script has ended, its outcome is on its way to the store, and the lease runs out
    meanwhile: it is still in flight here, so recovery leaves it to the outcome."""
    admin = await account_service.authenticate(grid, ADMIN_KEY)
    recovered: list[int] = []

    async def stalled_record(*args: Any, **kwargs: Any) -> bool:
        spec = args[2]
        await expire_lease(grid, spec.execution_id)
        recovered.append(await dispatcher.recover_expired())
        return await record_outcome(*args, **kwargs)

    monkeypatch.setattr(dispatcher_module.outcomes, "record_outcome", stalled_record)
    made = await submit_script(grid, admin, "print('once')", max_retries=2)
    done = await wait_terminal(grid, admin, made.id)
    assert recovered == [0]
    assert done.state is ExecutionState.SUCCEEDED and done.attempt == 1
    lines = (await log_service.read_logs(grid, admin, made.id, after=0, limit=10)).lines
    assert [line.text for line in lines] == ["once\n"]


async def test_a_stale_attempt_can_neither_log_nor_store_nor_finish(
    grid: Grid, tmp_path: Path
) -> None:
    """Attempt 1 loses its lease, attempt 2 takes the execution over; then attempt 1, still
    running somewhere, tries to append logs, store an output and report success: its logs and
    its outcome with that output are refused, and the log, outputs and outcome are attempt 2's
    only. Its output's bytes are on record as a blob no artifact uses (retention's to reclaim)."""
    admin = await account_service.authenticate(grid, ADMIN_KEY)
    made = await submit_script(grid, admin, "print(1)", max_retries=2)
    first, first_plane = await claim_as(grid, "node-a:1", utcnow())
    assert first.execution_id == made.id and first.attempt == 1

    async with store.transaction(grid.sessions) as session:  # attempt 1 stops renewing
        row = await repo.get_row(session, made.id)
        assert row is not None
        row.lease_expires_at = utcnow() - timedelta(seconds=1)
    recovery = Dispatcher(grid, LocalExecutor(slots=1, config=runner_config(grid.settings)))
    assert await recovery.recover_expired() == 1
    later = utcnow() + timedelta(minutes=5)  # past the retry's backoff
    # the same worker takes it again (as a server does after a stall): only the attempt differs
    second, second_plane = await claim_as(grid, "node-a:1", later)
    assert second.execution_id == made.id and second.attempt == 2

    await second_plane.append_logs([segment(second, "from attempt 2\n")])
    with pytest.raises(errors.LeaseLost):
        await first_plane.append_logs([segment(first, "from attempt 1\n")])
    stale_file = tmp_path / "stale.txt"
    stale_file.write_text("attempt 1's\n")
    [stale] = await first_plane.store_outputs([("out/stale.txt", stale_file)])
    good_file = tmp_path / "good.txt"
    good_file.write_text("attempt 2's\n")
    [good] = await second_plane.store_outputs([("out/good.txt", good_file)])
    success = domain.Outcome(ExecutionState.SUCCEEDED, 0, None)

    assert not await record_outcome(
        grid, "node-a:1", first, dataclasses.replace(success, outputs=(stale,))
    )
    async with store.reading(grid.sessions) as session:
        unused = await blob_repo.unreferenced_blobs(session, utcnow() + timedelta(days=1), 100)
    assert (admin.account.id, stale.digest) in set(unused)
    assert await record_outcome(
        grid, "node-a:1", second, dataclasses.replace(success, outputs=(good,))
    )

    done = await service.get(grid, admin, made.id)
    assert done.state is ExecutionState.SUCCEEDED and done.attempt == 2
    lines = (await log_service.read_logs(grid, admin, made.id, after=0, limit=100)).lines
    texts = [line.text for line in lines]
    assert texts[-1] == "from attempt 2\n" and "from attempt 1\n" not in texts
    assert all(line.attempt == 2 for line in lines)  # the retry notice and attempt 2's line
    _, outputs = await service.list_artifacts(grid, admin, made.id, ArtifactKind.OUTPUT)
    assert [a.path for a in outputs] == ["out/good.txt"]


async def claim_as(
    grid: Grid, worker: str, now: datetime
) -> tuple[domain.ExecutionSpec, GridControlPlane]:
    """Claim the next execution as ``worker`` would, and its control plane for that attempt."""
    async with store.transaction(grid.sessions) as session:
        row = await repo.claim_next(session, worker=worker, now=now, lease_s=60)
        assert row is not None
        spec = bare_spec(
            row.id, row.account_id, row.attempt, script=row.script, log_seq_start=row.last_seq
        )
    return spec, GridControlPlane(grid, spec, worker)


def segment(spec: domain.ExecutionSpec, text: str) -> domain.LogSegment:
    return domain.LogSegment(
        spec.log_seq_start + 1, spec.attempt, domain.Stream.STDOUT, utcnow(), text, 1
    )


async def test_a_claim_is_stamped_with_the_time_it_took_effect(grid: Grid) -> None:
    """With the worker's clock (as the dispatcher claims), the start is when the claim took
    effect, not the time asked at (a moment before: the claim may wait for the write lock),
    and the lease runs from it; both as aware UTC times the store compares correctly."""
    admin = await account_service.authenticate(grid, ADMIN_KEY)
    made = await submit_script(grid, admin, "print(1)")
    asked_at = utcnow()
    await asyncio.sleep(0.05)  # as if the claim waited that long for the write lock
    before = utcnow()
    async with store.transaction(grid.sessions) as session:
        row = await repo.claim_next(session, worker="w:1", now=asked_at, lease_s=60, clock=utcnow)
    after = utcnow()
    assert row is not None and row.id == made.id
    assert row.started_at is not None and row.lease_expires_at is not None
    assert before <= row.started_at <= after
    assert abs((row.lease_expires_at - row.started_at).total_seconds() - 60) < 0.5
    stored = await service.get(grid, admin, made.id)
    assert stored.started_at == row.started_at and stored.lease_expires_at == row.lease_expires_at
    # and the stored times compare as times: the lease has not expired, the start has passed
    async with store.reading(grid.sessions) as session:
        assert await repo.expired_leases(session, utcnow()) == []
        assert [
            e.id for e in await repo.expired_leases(session, utcnow() + timedelta(minutes=2))
        ] == [made.id]


async def test_an_outcome_recorded_from_the_claimed_row_is_costed_guarded_and_cancel_aware(
    grid: Grid,
) -> None:
    """The dispatcher hands ``record_outcome`` the execution as its claim returned it instead
    of reading it again: the cost is still the run time at the worker's price, a stale
    attempt's outcome is still refused, and a cancelled run is told apart by the flag as it is
    now (a user's cancel after the claim), not as the claim saw it."""
    admin = await account_service.authenticate(grid, ADMIN_KEY)
    made = await submit_script(grid, admin, "print(1)", max_retries=2)
    other = await submit_script(grid, admin, "print(2)", max_retries=0)
    claims = {}
    for _ in range(2):
        async with store.transaction(grid.sessions) as session:
            row = await repo.claim_next(session, worker="node-a:1", now=utcnow(), lease_s=60)
        assert row is not None and row.started_at is not None
        claims[row.id] = row
    spec = {
        e.id: bare_spec(e.id, e.account_id, e.attempt, script=e.script, log_seq_start=e.last_seq)
        for e in claims.values()
    }
    price = (3_600_000, 1)  # 3.60 EUR an hour on one slot: a micro-euro a millisecond
    stale = dataclasses.replace(spec[made.id], attempt=2)
    success = domain.Outcome(ExecutionState.SUCCEEDED, 0, None)
    assert not await record_outcome(
        grid, "node-a:1", stale, success, pricing=price, claimed=claims[made.id]
    )
    assert await record_outcome(
        grid, "node-a:1", spec[made.id], success, pricing=price, claimed=claims[made.id]
    )
    done = await service.get(grid, admin, made.id)
    assert done.state is ExecutionState.SUCCEEDED and done.finished_at is not None
    run_ms = (done.finished_at - claims[made.id].started_at) / timedelta(milliseconds=1)
    assert done.cost_micros is not None and abs(done.cost_micros - run_ms) <= 1

    await service.cancel(grid, admin, other.id)  # asked after the claim: the claim's row says no
    assert not claims[other.id].cancel_requested
    cancelled = domain.Outcome(ExecutionState.CANCELLED, domain.EXIT_RGRID_FAILURE, None)
    assert await record_outcome(
        grid, "node-a:1", spec[other.id], cancelled, pricing=price, claimed=claims[other.id]
    )
    assert (await service.get(grid, admin, other.id)).state is ExecutionState.CANCELLED


async def test_a_finished_execution_s_slot_is_filled_by_its_own_end_not_the_claim_loop(
    grid: Grid,
) -> None:
    """With one slot and no claim loop running, the second execution still starts: the first
    one's end claims it (on a busy event loop the claim loop's turn may come milliseconds
    later). The slot count holds: never two running at once."""
    dispatcher = Dispatcher(grid, LocalExecutor(slots=1, config=runner_config(grid.settings)))
    admin = await account_service.authenticate(grid, ADMIN_KEY)
    first = await submit_script(grid, admin, "print('first')")
    second = await submit_script(grid, admin, "print('second')")
    try:
        await dispatcher._fill_slots()  # what the claim loop does once; it is not started
        assert dispatcher.executor.free_slots() == 0
        done = await wait_terminal(grid, admin, second.id, timeout=60)
        assert done.state is ExecutionState.SUCCEEDED
        before = await service.get(grid, admin, first.id)
        assert before.finished_at is not None and done.started_at is not None
        assert before.finished_at <= done.started_at  # one slot: one after the other
    finally:
        await dispatcher.close()
