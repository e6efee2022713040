"""The local executor hands every outcome over, even when recording it fails."""

from __future__ import annotations

from rgrid import domain
from rgrid.domain import ExecutionState, FailureClass
from rgrid.executor.local import _report


def _spec() -> domain.ExecutionSpec:
    return domain.ExecutionSpec(
        execution_id="exec_x",
        account_id="acct_x",
        script="s.py",
        args=(),
        env={},
        inputs=(),
        timeout_s=60,
        memory_bytes=1 << 20,
        network=False,
        attempt=1,
        log_seq_start=0,
    )


async def test_an_outcome_that_cannot_be_recorded_ends_the_execution_as_failed() -> None:
    recorded: list[domain.Outcome] = []

    async def on_done(_spec: domain.ExecutionSpec, outcome: domain.Outcome) -> None:
        if outcome.outputs:
            raise UnicodeEncodeError("utf-8", "\udcff", 0, 1, "surrogates not allowed")
        recorded.append(outcome)

    given = domain.Outcome(
        ExecutionState.SUCCEEDED, 0, outputs=(domain.FileRef("a", "blake3:" + "0" * 64, 1),)
    )
    await _report(_spec(), given, on_done)
    assert [(o.state, o.failure_class, o.outputs) for o in recorded] == [
        (ExecutionState.FAILED, FailureClass.INFRASTRUCTURE, ())
    ]
    assert "could not record the outcome: UnicodeEncodeError" in (recorded[0].cause or "")


async def test_a_store_that_is_down_leaves_no_exception_behind() -> None:
    async def on_done(_spec: domain.ExecutionSpec, _outcome: domain.Outcome) -> None:
        raise OSError("database is gone")

    await _report(_spec(), domain.Outcome(ExecutionState.SUCCEEDED, 0), on_done)
