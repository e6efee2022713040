"""The domain: execution states, failure classes and the frozen records that flow between layers.

No I/O here. Allowed state transitions live in one table (``TRANSITIONS``).
"""

from __future__ import annotations

import dataclasses
import functools
import string
from datetime import datetime
from typing import Any, NamedTuple

ID_ALPHABET = string.digits + string.ascii_lowercase
ID_RANDOM_CHARS = 16  # 16 base36 chars ≈ 82 bits: collisions are not a concern


def new_id(prefix: str) -> str:
    """A prefixed, random, url-safe id such as ``exec_4k2j9…`` (SPEC §1)."""
    import secrets  # only the server makes ids; keep it out of the CLI's start-up

    return f"{prefix}_" + "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_RANDOM_CHARS))


from rgrid.enums import (  # noqa: E402  (re-exported: the domain's vocabulary)
    EXIT_RGRID_FAILURE,
    EXIT_TIMEOUT,
    INITIAL_STATES,
    TERMINAL_STATES,
    TRANSIENT_FAILURES,
    TRANSITIONS,
    WAITING_STATES,
    ArtifactKind,
    ExecutionState,
    FailureClass,
    Stream,
    can_transition,
)

__all__ = [
    "EXIT_RGRID_FAILURE",
    "EXIT_TIMEOUT",
    "INITIAL_STATES",
    "TERMINAL_STATES",
    "TRANSIENT_FAILURES",
    "TRANSITIONS",
    "WAITING_STATES",
    "ArtifactKind",
    "ExecutionState",
    "FailureClass",
    "Stream",
    "can_transition",
]


@dataclasses.dataclass(frozen=True)
class FileRef:
    """A file of an execution's work directory: relative path + content hash."""

    path: str
    digest: str
    size: int


@dataclasses.dataclass(frozen=True, eq=False)
class Tree:
    """A project tree (SPEC §4.1) as the grid keeps it: stored once, named by ``digests.of_tree``,
    shared by every execution (and batch item) that carries it. Immutable, so what is derived
    from it is computed once per tree, not once per execution."""

    digest: str
    files: tuple[FileRef, ...]
    #: directories that no file implies (relative POSIX paths)
    dirs: tuple[str, ...] = ()

    @functools.cached_property
    def by_path(self) -> dict[str, FileRef]:
        return {ref.path: ref for ref in self.files}

    @functools.cached_property
    def all_dirs(self) -> frozenset[str]:
        """Every directory the tree holds: the given ones and every file's parents."""
        found: set[str] = set()
        for rel in [*(ref.path for ref in self.files), *(d + "/x" for d in self.dirs)]:
            cut = rel.rfind("/")
            while cut > 0 and (parent := rel[:cut]) not in found:
                found.add(parent)
                cut = parent.rfind("/")
        return frozenset(found)

    @functools.cached_property
    def has_bytecode(self) -> bool:
        return any(ref.path.endswith(".pyc") for ref in self.files)


@dataclasses.dataclass(frozen=True)
class InputReads:
    """What a run did to its input files, as the kernel saw it (paths as in ``FileRef``).

    ``read``: opened read-only at least once, or still open when the run ended. ``written``:
    opened only with write access (rewritten, appended to, or a database opened read-write):
    the kernel does not tell those apart. Input files in neither were never opened.
    """

    read: tuple[str, ...]
    written: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class ExecutionSpec:
    """Everything a worker needs to run one execution."""

    execution_id: str
    account_id: str
    script: str
    args: tuple[str, ...]
    env: dict[str, str]
    #: the files named by the run (script, modules, arguments, --include): its own copies
    inputs: tuple[FileRef, ...]
    timeout_s: float
    memory_bytes: int
    network: bool
    attempt: int
    disk_bytes: int = 10 * 1024**3
    #: the user's working directory, where the tree is mounted (None: the work directory's path)
    cwd: str | None = None
    #: ``sys.argv[0]`` as the user typed it (None: ``script``)
    argv0: str | None = None
    #: directories outside ``cwd`` mounted at their own place
    mount_roots: tuple[str, ...] = ()
    #: outside paths named by arguments, whose writes come back
    named_outside: tuple[str, ...] = ()
    #: the sequence number of the last log line already stored (earlier attempts)
    log_seq_start: int = 0
    #: requirement lines (presets merged in); empty: the standard library only
    requirements: tuple[str, ...] = ()
    #: the runtime's Python minor version ("3.11"); None: the worker's default
    python: str | None = None
    #: what the script reads on stdin (its path is ``STDIN_PATH``); None: nothing, end-of-file
    stdin: FileRef | None = None
    #: the project tree below the named ``inputs`` (None: only those)
    tree: Tree | None = None
    #: the worker that claimed it (a Ray node's id, or the server's own)
    worker: str = ""
    #: the user's time zone ("Europe/Berlin", a POSIX TZ; None: UTC) and locale variables
    time_zone: str | None = None
    locale: dict[str, str] = dataclasses.field(default_factory=dict)
    #: the user's terminal ({"columns", "lines", "stdout", "stderr", "term", "colorterm"}):
    #: the script's streams that go to it are pseudo-terminals; None: pipes
    terminal: dict[str, Any] | None = None

    @property
    def all_inputs(self) -> tuple[FileRef, ...]:
        """The named inputs and the tree's files."""
        return self.inputs + self.tree.files if self.tree is not None else self.inputs

    @property
    def dirs(self) -> tuple[str, ...]:
        """Directories to create that no input implies."""
        return self.tree.dirs if self.tree is not None else ()


#: how an execution's stdin is named where it is handled like a file (messages, ``FileRef``)
STDIN_PATH = "<stdin>"


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a runner reports when an execution ends."""

    state: ExecutionState
    exit_code: int | None
    failure_class: FailureClass | None = None
    cause: str | None = None
    hint: str | None = None
    outputs: tuple[FileRef, ...] = ()
    #: the exact packages of the environment it ran in (name==version)
    packages: tuple[str, ...] = ()
    #: the interpreter version it ran with ("3.11.7")
    python_version: str | None = None
    #: what it did to its input files; None: not observed (the result cache then needs the
    #: whole input tree to be the same)
    reads: InputReads | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: empty directories the run created (output files imply their own)
    output_dirs: tuple[str, ...] = ()
    #: its environment was built for it (not found ready on its worker)
    env_built: bool = False
    #: whether the script (or anything it started) used the network; None: not observed
    network_used: bool | None = None


class LogSegment(NamedTuple):
    """Consecutive lines of one stream that were read together; ``text`` holds ``line_count`` lines
    numbered from ``first_seq``. How logs travel and are stored: a chatty script's 200,000
    lines cost a few hundred segments, not 200,000 objects."""

    first_seq: int
    attempt: int
    stream: Stream
    ts: datetime
    text: str
    line_count: int

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.line_count - 1


def worker_lost(cause: str) -> Outcome:
    """The outcome of an attempt whose worker went away (retried while retries are left)."""
    return Outcome(
        ExecutionState.FAILED,
        EXIT_RGRID_FAILURE,
        FailureClass.WORKER_LOST,
        cause=cause,
        hint="not caused by the script; `rgrid retry ID` runs it again",
    )


def segment_lines(text: str) -> list[str]:
    """The lines of a segment's text: each keeps its newline; a text without a final newline
    is a single line (a piece of a long line, or a last line without newline)."""
    if not text.endswith("\n"):
        return [text]
    return [line + "\n" for line in text[:-1].split("\n")]


class LogLine(NamedTuple):
    """One stored line. A NamedTuple, not a dataclass: a chatty script makes hundreds of
    thousands of them, and a tuple is several times cheaper to create."""

    seq: int
    attempt: int
    stream: Stream
    ts: datetime
    text: str


@dataclasses.dataclass(frozen=True)
class Account:
    id: str
    name: str
    is_admin: bool
    created_at: datetime


@dataclasses.dataclass(frozen=True)
class ApiKey:
    id: str
    account_id: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who is calling: the account and the key it used."""

    account: Account
    key_id: str
    #: the console session it came with (its cookie's token); None: a bearer key
    session: str | None = dataclasses.field(default=None, repr=False)


@dataclasses.dataclass(frozen=True)
class Execution:
    id: str
    account_id: str
    state: ExecutionState
    script: str
    args: tuple[str, ...]
    env_names: tuple[str, ...]
    metadata: dict[str, str]
    timeout_s: float
    memory_bytes: int
    disk_bytes: int
    network: bool
    cwd: str | None
    named_outside: tuple[str, ...]
    exit_code: int | None
    failure_class: FailureClass | None
    cause: str | None
    hint: str | None
    attempt: int
    worker: str | None
    created_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    last_seq: int
    cancel_requested: bool
    requirements: tuple[str, ...] = ()
    dependency_source: str = "none"
    runtime: str | None = None
    python_version: str | None = None
    packages: tuple[str, ...] = ()
    max_retries: int = 2
    retry_of: str | None = None
    retry_reason: str | None = None
    batch_id: str | None = None
    batch_index: int | None = None
    batch_input: str | None = None
    superseded: bool = False
    cached_from: str | None = None  # a cache hit: the execution whose result this is
    cache_note: str | None = None  # what the cache said: "hit", or why it missed
    cost_micros: int | None = None  # so far (provisional) or final; a running one accrues
    cost_final: bool = False
    #: the size of the piped stdin it was given; None: none (a terminal: end-of-file at once)
    stdin_size: int | None = None
    output_dirs: tuple[str, ...] = ()  # empty directories the run created
    # what the grid itself needs of it (never on the wire): its sealed environment, places,
    # inputs beyond the named files, and its result-cache record
    env_ciphertext: str = dataclasses.field(default="", repr=False)
    argv0: str | None = None
    mount_roots: tuple[str, ...] = ()
    stdin_digest: str | None = None
    tree_digest: str | None = None
    cache_key: str | None = None
    cache_parts: dict[str, Any] | None = None
    cache_base: str | None = None
    #: what the run did to its files ({"read": [...], "written": [...]}); None: not observed
    reads: dict[str, list[str]] | None = None
    lease_expires_at: datetime | None = None
    #: whether the run used the network (a hit: whether the run it reuses did); None: not
    #: observed (the host's network, an older grid) or not ended
    network_used: bool | None = None
    #: {"time_zone": …, "locale": {…}}: the user's surroundings it runs in; None: defaults
    surroundings: dict[str, Any] | None = None

    @property
    def log_source(self) -> str:
        """The execution whose log this one shows (a cache hit replays its original's)."""
        return self.cached_from or self.id

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclasses.dataclass(frozen=True)
class Reused:
    """The earlier succeeded run whose result answers a new execution (SPEC §12): nothing
    runs, the new one is finished at once with that run's log, packages and outputs."""

    source_id: str
    last_seq: int
    packages: tuple[str, ...] = ()
    python_version: str | None = None
    output_dirs: tuple[str, ...] = ()
    #: whether that run used the network (reused anyway: the user asked for ``cache always``)
    network_used: bool | None = False


@dataclasses.dataclass(frozen=True)
class NewExecution:
    """An execution about to be stored: what submit, retry and batch submit make, the one
    way an execution comes to be. Born ``queued`` — or ``succeeded`` when ``reused`` says which
    earlier run answers it. ``columns`` is its stored form."""

    id: str
    account_id: str
    script: str
    args: tuple[str, ...]
    env_ciphertext: str
    env_names: tuple[str, ...]
    timeout_s: float
    memory_bytes: int
    disk_bytes: int
    network: bool
    requirements: tuple[str, ...]
    dependency_source: str
    runtime: str | None
    python_version: str | None
    max_retries: int
    created_at: datetime
    cwd: str | None = None
    argv0: str | None = None
    #: {"roots": [...], "named": [...]}, or None
    mounts: dict[str, list[str]] | None = None
    idempotency_key: str | None = None
    stdin_digest: str | None = None
    stdin_size: int | None = None
    tree_digest: str | None = None
    cache_key: str | None = None
    cache_parts: dict[str, Any] | None = None
    cache_base: str | None = None
    #: what ``rgrid status`` says about the cache ("hit" when reused, else why it missed)
    cache_note: str | None = None
    batch_id: str | None = None
    batch_index: int | None = None
    batch_input: str | None = None
    retry_of: str | None = None
    #: {"time_zone": …, "locale": {…}} (``schemas.Surroundings``); None: UTC and C.UTF-8
    surroundings: dict[str, Any] | None = None
    reused: Reused | None = None

    def answered_by(self, reused: Reused) -> NewExecution:
        return dataclasses.replace(self, reused=reused, cache_note="hit")

    def columns(self) -> dict[str, Any]:
        """Every column of its row (one shape for all, so that many insert in one statement)."""
        reused = self.reused
        state = ExecutionState.QUEUED if reused is None else ExecutionState.SUCCEEDED
        assert state in INITIAL_STATES
        columns: dict[str, Any] = {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if field.name != "reused"
        }
        columns.update(
            args=list(self.args),
            env_names=list(self.env_names),
            requirements=list(self.requirements),
            state=state.value,
            attempt=0,
            queued_at=self.created_at,
            last_seq=0,
            cancel_requested=False,
            packages=[],
            dirs=[],
            output_dirs=[],
            superseded=False,
            exit_code=None,
            started_at=None,
            finished_at=None,
            cached_from=None,
            cost_micros=None,
            cost_final=False,
            network_used=None,
        )
        if reused is not None:  # nothing runs: finished now, as the run it reuses
            columns.update(
                exit_code=0,
                started_at=self.created_at,
                finished_at=self.created_at,
                last_seq=reused.last_seq,
                packages=list(reused.packages),
                python_version=reused.python_version or self.python_version,
                cached_from=reused.source_id,
                cost_micros=0,  # nothing ran
                cost_final=True,
                output_dirs=list(reused.output_dirs),
                network_used=reused.network_used,
            )
        return columns


@dataclasses.dataclass(frozen=True)
class Worker:
    """A process with slots that runs executions, as the grid records it."""

    id: str
    node: str
    executor: str
    slots: int
    hourly_price_micros: int
    billing_period_s: float
    started_at: datetime
    heartbeat_at: datetime
    #: active, stopped, lost; an autoscaled node's: provisioning, active, draining,
    #: terminated, dead
    state: str
    sandbox: str = ""
    pythons: tuple[str, ...] = ()
    #: an autoscaled node's provider, its id there and its kind (None: not autoscaled)
    provider: str | None = None
    provider_id: str | None = None
    kind: str | None = None
    #: when it was terminated or found dead (its last period is the one holding this)
    ended_at: datetime | None = None


@dataclasses.dataclass(frozen=True)
class AutoscalerStatus:
    """Where the autoscaler stands, for ``rgrid workers``."""

    provider: str
    kind: str
    min_nodes: int
    max_nodes: int
    #: the policy's last word on the fleet ("3 nodes, 0 of 3 slots free, 12 queued; …")
    status: str
    #: the last error of the provider and when it happened (None: none)
    last_error: str | None = None
    last_error_at: datetime | None = None
    #: creating waits until then after provider errors (None: it does not)
    backoff_until: datetime | None = None


@dataclasses.dataclass(frozen=True)
class Artifact:
    execution_id: str
    kind: ArtifactKind
    path: str
    digest: str
    size: int
    created_at: datetime
    expires_at: datetime | None


@dataclasses.dataclass(frozen=True)
class Batch:
    id: str
    account_id: str
    script: str
    parallel: int
    total: int
    created_at: datetime
    #: executions of its current items by state
    counts: dict[str, int]
    #: what its items cost so far, in micros (settled attempts; final or provisional)
    cost_micros: int = 0

    @property
    def left(self) -> int:
        """Its items that have not ended."""
        return max(0, self.total - sum(self.counts.get(s.value, 0) for s in TERMINAL_STATES))

    @property
    def done(self) -> bool:
        return self.left == 0
