"""The line announcing an automatic retry says what failed, on one line (issue 14, item 9)."""

from __future__ import annotations

from rgrid import domain
from rgrid.domain import ExecutionState, FailureClass
from rgrid.services.outcomes import retry_reason


def _failed(cause: str | None) -> domain.Outcome:
    return domain.Outcome(ExecutionState.FAILED, 1, FailureClass.INFRASTRUCTURE, cause=cause)


def test_a_cause_over_several_lines_becomes_one() -> None:
    cause = "the worker failed: RgridError: uv venv failed: error:\n  Current directory does not exist\n"
    assert retry_reason(_failed(cause)) == (
        "infrastructure: the worker failed: RgridError: uv venv failed: error: | "
        "Current directory does not exist"
    )


def test_no_cause_still_says_what_failed() -> None:
    assert retry_reason(_failed(None)) == "infrastructure: no cause recorded"
    assert retry_reason(_failed("\n")) == "infrastructure: no cause recorded"
