"""Turn a sandbox result and the tail of stderr into a state, failure class, cause and hint."""

from __future__ import annotations

import re
import signal as signals
from collections.abc import Sequence

from rgrid import domain
from rgrid.domain import ExecutionState, FailureClass
from rgrid.sandbox import DISK_BYTES, MAX_PROCESSES, LimitHit, SandboxResult

_MODULE_NOT_FOUND = re.compile(r"ModuleNotFoundError: No module named '([^'.]+)")
_SYNTAX_AT = re.compile(r'File "([^"]+)", line (\d+)')


def _last_error_line(stderr_tail: Sequence[str]) -> str | None:
    """The last line of a traceback (``ValueError: …``) or, failing that, the last stderr line."""
    lines = [line.rstrip("\n") for line in stderr_tail if line.strip()]
    for line in reversed(lines):
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b", line):
            return line[:500]
    return lines[-1][:500] if lines else None


def _signal_name(number: int) -> str:
    try:
        return signals.Signals(number).name
    except ValueError:
        return f"signal {number}"


def classify(
    result: SandboxResult,
    stderr_tail: Sequence[str],
    *,
    timeout_s: float,
    memory_bytes: int,
    disk_bytes: int = DISK_BYTES,
    max_processes: int = MAX_PROCESSES,
) -> domain.Outcome:
    """The outcome of a finished sandbox run (outputs are added by the caller)."""
    if result.cancelled:
        return domain.Outcome(ExecutionState.CANCELLED, result.exit_code, cause="cancelled")
    if result.timed_out:
        return domain.Outcome(
            ExecutionState.FAILED,
            domain.EXIT_TIMEOUT,
            FailureClass.TIMEOUT,
            cause=f"the script ran longer than its timeout ({timeout_s:g}s)",
            hint="raise it with --timeout, e.g. --timeout 2h",
        )
    if result.exit_code == 0:
        return domain.Outcome(ExecutionState.SUCCEEDED, 0)
    cause = _last_error_line(stderr_tail)
    if result.limit_hit is LimitHit.DISK:
        return domain.Outcome(
            ExecutionState.FAILED,
            result.exit_code,
            FailureClass.DISK_LIMIT,
            cause=f"the script wrote more than its disk limit ({disk_bytes // 1024**2} MiB) "
            "or the grid's disk was nearly full; its files were not kept",
            hint="give it more with --disk, e.g. --disk 20GiB",
        )
    if result.limit_hit is LimitHit.PROCESSES:
        return domain.Outcome(
            ExecutionState.FAILED,
            result.exit_code,
            FailureClass.PROCESS_LIMIT,
            cause=f"the script started more than {max_processes} processes at once",
            hint=cause,
        )
    if result.limit_hit is LimitHit.MEMORY or (
        cause is not None and cause.startswith("MemoryError")
    ):
        return domain.Outcome(
            ExecutionState.FAILED,
            result.exit_code,
            FailureClass.OUT_OF_MEMORY,
            cause=f"the script ran out of memory (limit {memory_bytes // 1024**2} MiB)",
            hint="give it more with --memory, e.g. --memory 8GiB",
        )
    if result.signal is not None:
        name = _signal_name(result.signal)
        return domain.Outcome(
            ExecutionState.FAILED,
            result.exit_code,
            FailureClass.SCRIPT_ERROR,
            cause=f"the script was killed by {name}",
            hint=cause,
        )
    return domain.Outcome(
        ExecutionState.FAILED,
        result.exit_code,
        FailureClass.SCRIPT_ERROR,
        cause=cause or f"the script exited with code {result.exit_code}",
        hint=_hint(cause, stderr_tail),
    )


def _hint(cause: str | None, stderr_tail: Sequence[str]) -> str | None:
    if cause is None:
        return None
    missing = _MODULE_NOT_FOUND.search(cause)
    if missing:
        name = missing.group(1)
        return f"add {name} to requirements.txt beside the script or to a PEP 723 header"
    if cause.startswith(("SyntaxError", "IndentationError", "TabError")):
        for line in reversed(stderr_tail):
            where = _SYNTAX_AT.search(line)
            if where:
                return f"fix the syntax at {where.group(1)}:{where.group(2)}"
    return None
