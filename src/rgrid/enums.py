"""The vocabulary shared by every layer: execution states, failure classes, log streams.

Kept apart from ``domain`` so the CLI can name states without building the domain's classes.
"""

from __future__ import annotations

from enum import StrEnum


class ExecutionState(StrEnum):
    #: waiting for a free slot
    QUEUED = "queued"
    #: claimed by a worker, the script is running
    RUNNING = "running"
    #: a transient failure happened; it will be queued again
    RETRYING = "retrying"
    #: the script exited 0
    SUCCEEDED = "succeeded"
    #: the script or the grid failed; see the failure class
    FAILED = "failed"
    #: cancelled by the user
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {ExecutionState.SUCCEEDED, ExecutionState.FAILED, ExecutionState.CANCELLED}
)

#: every change of an execution's state the grid makes (``store.executions.transition`` checks
#: each against it): a waiting one is claimed or cancelled; a running one ends, is cancelled, or
#: is queued again for a retry (``retrying``, claimed like a queued one once its backoff passed)
TRANSITIONS: dict[ExecutionState, frozenset[ExecutionState]] = {
    ExecutionState.QUEUED: frozenset({ExecutionState.RUNNING, ExecutionState.CANCELLED}),
    ExecutionState.RETRYING: frozenset({ExecutionState.RUNNING, ExecutionState.CANCELLED}),
    ExecutionState.RUNNING: frozenset(
        {
            ExecutionState.SUCCEEDED,
            ExecutionState.FAILED,
            ExecutionState.CANCELLED,
            ExecutionState.RETRYING,
        }
    ),
    ExecutionState.SUCCEEDED: frozenset(),
    ExecutionState.FAILED: frozenset(),
    ExecutionState.CANCELLED: frozenset(),
}
#: the states an execution is born in: queued, or succeeded when a cache hit answers it
INITIAL_STATES = frozenset({ExecutionState.QUEUED, ExecutionState.SUCCEEDED})
#: the states an execution waits to be claimed in
WAITING_STATES = (ExecutionState.QUEUED, ExecutionState.RETRYING)


def can_transition(old: ExecutionState, new: ExecutionState) -> bool:
    return new in TRANSITIONS[old]


class FailureClass(StrEnum):
    #: the script exited non-zero
    SCRIPT_ERROR = "script_error"
    #: the script ran longer than --timeout
    TIMEOUT = "timeout"
    #: the script ran out of its --memory limit
    OUT_OF_MEMORY = "out_of_memory"
    #: the script wrote more than its --disk limit (or the grid's disk was nearly full)
    DISK_LIMIT = "disk_limit"
    #: the script started more processes than the sandbox allows at once
    PROCESS_LIMIT = "process_limit"
    #: its dependencies could not be installed
    DEPENDENCY_ERROR = "dependency_error"
    #: an input could not be materialised
    INPUT_ERROR = "input_error"
    #: the outputs exceeded the configured size or count
    OUTPUT_LIMIT = "output_limit"
    #: the worker running it disappeared (transient)
    WORKER_LOST = "worker_lost"
    #: the grid itself failed (transient)
    INFRASTRUCTURE = "infrastructure"


TRANSIENT_FAILURES = frozenset({FailureClass.WORKER_LOST, FailureClass.INFRASTRUCTURE})

EXIT_TIMEOUT = 124
EXIT_RGRID_FAILURE = 1


class Stream(StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"
    #: rgrid's own lines about the execution (limits, retries); shown on stderr
    SYSTEM = "system"
    #: the environment being built (uv's output); shown on stderr
    SETUP = "setup"


class ArtifactKind(StrEnum):
    INPUT = "input"
    OUTPUT = "output"


#: how the result cache answers a run (``rgrid run --cache``; ``cache =`` in .rgrid/config.toml,
#: where true is "auto" and false "off"): "auto" reuses an identical earlier run unless it used
#: the network, "always" even then (its network access is deterministic), "off" never
CACHE_MODES = ("auto", "always", "off")
