"""Wire models shared by the client and the API: plain classes (never ORM rows), made
keyword-only dataclasses on the server.

Plain classes keep the CLI fast (no pydantic, not even ``dataclasses``, at its start); FastAPI
validates them on the server side. Types, and the ranges the store can hold (``Range``), are
checked by FastAPI; formats and business limits by the services. ``load`` and ``dump`` convert
to and from JSON-ready values on the client side.
"""

from __future__ import annotations

import _thread
import enum
import functools
import types
import typing
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

from rgrid.bounds import INT32_MAX, INT64_MAX
from rgrid.enums import ArtifactKind, ExecutionState, FailureClass, Stream

T = TypeVar("T")

#: request bodies refuse unknown fields (read by FastAPI's pydantic; a plain dict here)
FORBID_EXTRA = {"extra": "forbid"}


class Range:
    """Bounds of a number field, read by the server's pydantic (validation and the OpenAPI
    ``minimum``/``maximum``) through its ``__get_pydantic_core_schema__`` hook, so that this
    module needs no pydantic import on the client side, where the marker is inert."""

    def __init__(self, ge: int, le: int) -> None:
        self.ge, self.le = ge, le

    def __get_pydantic_core_schema__(self, source: Any, handler: Callable[[Any], Any]) -> Any:
        schema = handler(source)
        if schema.get("type") in ("int", "float"):
            schema.update(ge=self.ge, le=self.le)
        return schema


#: a count or size the store keeps in a BIGINT / an INTEGER column
Size = Annotated[int, Range(0, INT64_MAX)]
Count = Annotated[int, Range(0, INT32_MAX)]


# Every CLI command imports this module, and making a dataclass costs: ~0.3 ms a class (most of
# it the signature dataclasses writes into a model without a docstring), and importing
# ``dataclasses`` loads ``inspect``, ``ast``, ``dis`` and ``tokenize``, which a command like
# `rgrid status` needs for nothing else. So a wire model is a plain class with one generic
# keyword-only ``__init__`` (``_init``) until something needs it to be a dataclass: the server
# builds them all before FastAPI reads their fields (``build_all``); ``built`` builds one.
_WIRE: set[type] = set()
_BUILDING = _thread.allocate_lock()  # threading's Lock, without importing threading
_REQUIRED = object()  # the default of a field that has none
_FIELDS: dict[type, tuple[tuple[str, Any], ...]] = {}  # fields_of, per model
_NAMES: dict[type, frozenset[str]] = {}  # their names, per model


class _Fresh:
    """The default of a field made anew for each instance (``fresh``)."""

    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


def fresh(make: Callable[[], Any]) -> Any:
    """A field's default made by calling ``make`` for each instance (``list``, ``dict``): what
    ``dataclasses.field(default_factory=make)`` is once the model is built."""
    return _Fresh(make)


@typing.dataclass_transform(kw_only_default=True)
def _wire(cls: type[T]) -> type[T]:
    if any(base in _WIRE for base in cls.__mro__[1:]):
        raise TypeError(f"{cls.__name__}: a wire model cannot extend another one")
    setattr(cls, "__init__", _init)  # noqa: B010 (mypy: no assigning to a method)
    _WIRE.add(cls)
    return cls


def fields_of(cls: type) -> tuple[tuple[str, Any], ...]:
    """A wire model's fields in order, each with its default (``_REQUIRED``, a value, or a
    ``_Fresh``), as declared: read once, before the model is ever built (a dataclass drops the
    class attributes of the fields it makes with a factory)."""
    known = _FIELDS.get(cls)
    if known is None:
        # the class's own annotations, as inspect.get_annotations reads them (without inspect)
        names = cls.__dict__.get("__annotations__", {})  # noqa: RUF063
        declared = tuple((name, cls.__dict__.get(name, _REQUIRED)) for name in names)
        known = _FIELDS.setdefault(cls, declared)
    return known


def _names_of(cls: type) -> frozenset[str]:
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES.setdefault(cls, frozenset(name for name, _ in fields_of(cls)))
    return names


def _init(self: Any, **values: Any) -> None:
    """A wire model's ``__init__`` until it is built: keyword arguments only, each field set
    from its argument or its default, as the dataclass's generated one does."""
    kind = type(self)
    if values.keys() == _names_of(kind):  # every field given (a page loaded): set them at once
        self.__dict__.update(values)
        return
    for name, default in fields_of(kind):
        if name in values:
            value = values.pop(name)
        elif default is _REQUIRED:
            raise TypeError(f"{kind.__name__}() missing required keyword argument: {name!r}")
        elif isinstance(default, _Fresh):
            value = default.make()
        else:
            value = default
        self.__dict__[name] = value
    if values:
        raise TypeError(
            f"{kind.__name__}() got an unexpected keyword argument {next(iter(values))!r}"
        )


def built(cls: type[T]) -> type[T]:
    """The wire model ``cls``, made a keyword-only dataclass if it is not yet one (for FastAPI,
    or code that needs ``dataclasses`` functions on it)."""
    if "__dataclass_fields__" not in cls.__dict__:
        with _BUILDING:
            if "__dataclass_fields__" not in cls.__dict__:  # not built by another thread meanwhile
                import dataclasses

                for name, default in fields_of(cls):
                    if isinstance(default, _Fresh):
                        setattr(cls, name, dataclasses.field(default_factory=default.make))
                delattr(cls, "__init__")  # the dataclass keeps an __init__ of the class's own
                dataclasses.dataclass(kw_only=True, repr=False, eq=False)(cls)
    return cls


def build_all() -> None:
    """Make every wire model a dataclass now (the server: FastAPI reads their fields)."""
    for cls in list(_WIRE):
        built(cls)


def is_wire(kind: Any) -> bool:
    """Whether ``kind`` is a wire model class (built yet or not)."""
    return isinstance(kind, type) and kind in _WIRE


def replace(value: T, **changes: Any) -> T:
    """A copy of the wire model ``value`` with ``changes`` (``dataclasses.replace``, built or
    not)."""
    kind = type(value)
    current = {name: getattr(value, name) for name, _ in fields_of(kind)}
    return kind(**(current | changes))


@_wire
class FileIn:
    __pydantic_config__ = FORBID_EXTRA
    path: str
    digest: str
    size: Size
    #: only part of the project tree (named by no argument, module or --include): not in the
    #: result-cache key while the grid cannot tell which files a run read (SPEC §12)
    tree: bool = False


@_wire
class StdinIn:
    """Piped stdin, uploaded as a blob like any input. An empty one (size 0) needs no blob."""

    __pydantic_config__ = FORBID_EXTRA
    digest: str
    size: Size


@_wire
class BlobsQuery:
    __pydantic_config__ = FORBID_EXTRA
    digests: list[str]


@_wire
class TreeIn:
    """A project tree (SPEC §4.1), sent once: its files (already uploaded) and the directories
    no file implies. Its name is ``digests.of_tree`` of them."""

    __pydantic_config__ = FORBID_EXTRA
    files: list[FileIn] = fresh(list)
    dirs: list[str] = fresh(list)


@_wire
class TreePublic:
    digest: str
    files: int
    bytes: int


@_wire
class BlobsMissing:
    missing: list[str]


@_wire
class BlobStored:
    digest: str
    size: int


#: headers of a resumable upload (PUT /blobs/{digest}): marks it, and where this piece starts
RESUMABLE_HEADER = "x-rgrid-resumable"
OFFSET_HEADER = "x-rgrid-offset"


@_wire
class SpendingLimitIn:
    __pydantic_config__ = FORBID_EXTRA
    #: euros as a decimal string ("5.00"): parsed exactly, never as a float
    amount: str
    period: str = "month"


@_wire
class SpendingLimitPublic:
    limit_micros: int
    period: str
    spent_micros: int
    period_start: datetime


@_wire
class CostGroup:
    """One group of ``rgrid cost``: a day, a batch or a metadata value."""

    group: str
    executions: int
    compute_us: int
    #: final costs, and provisional ones of executions whose periods are not closed yet
    cost_micros: int


@_wire
class CostTotal:
    executions: int
    compute_us: int
    cost_micros: int


@_wire
class IdleCost:
    """Paid billing periods in which no execution ran: the grid's cost, charged to no
    account (shown to admin keys only)."""

    periods: int
    micros: int


@_wire
class CostReport:
    #: day, batch or metadata:KEY
    by: str
    groups: list[CostGroup]
    total: CostTotal
    idle: IdleCost | None = None


@_wire
class EstimatePublic:
    """Run-time statistics of earlier runs of a script, and the price they would run at."""

    #: what they are based on: content (the same script bytes), name, or default (no history)
    basis: str
    runs: int
    median_us: int
    p90_us: int
    hourly_price_micros: int
    slots: int


@_wire
class CostShare:
    execution_id: str
    #: its run time inside the period
    run_us: int
    micros: int


@_wire
class BillingPeriodPublic:
    """A closed billing period of a worker: its price split over the executions that ran in
    it; what no execution used is idle."""

    worker: str
    start: datetime
    end: datetime
    price_micros: int
    idle_micros: int
    shares: list[CostShare]


@_wire
class UploadProgress:
    """A resumable upload: how many bytes the grid holds; send the rest from ``offset``."""

    digest: str
    offset: int


@_wire
class Terminal:
    """The terminal ``rgrid run`` writes to: the script gets a pseudo-terminal of this size
    for each of its streams that goes to it, so colours, progress bars and ``isatty()``
    behave as under ``python`` there."""

    __pydantic_config__ = FORBID_EXTRA
    columns: Annotated[int, Range(0, 10_000)] = 80
    lines: Annotated[int, Range(0, 10_000)] = 24
    #: the script's stdout is a terminal; its stderr is one
    stdout: bool = True
    stderr: bool = True
    #: ``$TERM`` and ``$COLORTERM`` of the user's shell
    term: str | None = None
    colorterm: str | None = None


@_wire
class Surroundings:
    """What the user's shell gives a script besides ``--env`` (SPEC §4): its time zone and
    locale, so that dates and numbers come out as under ``python`` there."""

    __pydantic_config__ = FORBID_EXTRA
    #: ``$TZ``, else the zone of the user's clock by name ("Europe/Berlin"); None: UTC
    time_zone: str | None = None
    #: ``LANG``, ``LANGUAGE`` and ``LC_*`` as the user's environment has them
    locale: dict[str, str] = fresh(dict)
    #: the user's terminal, when the CLI's stdout or stderr is one (None: neither)
    terminal: Terminal | None = None


@_wire
class ExecutionCreate:
    __pydantic_config__ = FORBID_EXTRA
    script: str
    args: list[str] = fresh(list)
    files: list[FileIn] = fresh(list)
    env: dict[str, str] = fresh(dict)
    metadata: dict[str, str] = fresh(dict)
    timeout_s: float = 3600.0
    memory_bytes: Size = 2 * 1024**3
    #: what the work directory may hold (SPEC §14)
    disk_bytes: Size = 10 * 1024**3
    network: bool = True
    idempotency_key: str | None = None
    #: requirement lines, and where the CLI found them (SPEC §7)
    requirements: list[str] = fresh(list)
    dependency_source: str = "none"
    #: "python3.11", "python3.11:datascience", "datascience"; None: the default Python
    runtime: str | None = None
    #: automatic retries after transient failures (worker_lost, infrastructure)
    max_retries: Count = 2
    #: reuse an identical earlier succeeded run's result (SPEC §12); False: ``--no-cache``
    cache: bool = True
    #: reuse it even if it used the network (``--cache always``: its network access is known
    #: to be deterministic); by default such a run is not reused
    cache_always: bool = False
    #: the user's time zone and locale (None: an older client; UTC and C.UTF-8)
    surroundings: Surroundings | None = None
    #: what the script reads on stdin; None: nothing (it gets end-of-file at once)
    stdin: StdinIn | None = None
    #: where the script runs (SPEC §4.2): this absolute directory of the user's machine holds
    #: the execution's tree; None: the grid's own work directory
    cwd: str | None = None
    #: the script as typed, ``sys.argv[0]`` (default: ``script``)
    argv0: str | None = None
    #: directories outside ``cwd`` mounted at their own place (files with absolute paths lie
    #: in them)
    mount_roots: list[str] = fresh(list)
    #: outside paths named by arguments: what the script writes there comes back
    named_outside: list[str] = fresh(list)
    #: directories of the project tree to create that no file implies (relative POSIX paths)
    dirs: list[str] = fresh(list)
    #: the project tree (its ``digests.of_tree``), sent before with PUT /api/v1/trees; an
    #: unknown one is ``TREE_UNKNOWN``. Files in ``files`` are the run's named ones.
    tree: str | None = None


@_wire
class ExecutionPublic:
    id: str
    state: ExecutionState
    script: str
    args: list[str]
    env_names: list[str]
    metadata: dict[str, str]
    timeout_s: float
    memory_bytes: int
    disk_bytes: int
    network: bool
    cwd: str | None
    named_outside: list[str]
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
    duration_s: float | None
    last_seq: int
    requirements: list[str] = fresh(list)
    dependency_source: str = "none"
    runtime: str | None = None
    python_version: str | None = None
    packages: list[str] = fresh(list)
    max_retries: int = 2
    retry_of: str | None = None
    retry_reason: str | None = None
    batch_id: str | None = None
    batch_index: int | None = None
    batch_input: str | None = None
    cached_from: str | None = None
    #: what the result cache said: "hit", or why it missed
    cache: str | None = None
    #: integer micros (1 EUR = 1,000,000): provisional until ``cost_final``
    cost_micros: int | None = None
    cost_final: bool = False
    #: set on a submit's answer when the account is near its spending limit
    warning: str | None = None
    #: bytes of piped stdin it was given; None: none
    stdin_size: int | None = None
    #: empty directories the run created (its output files imply their own directories)
    output_dirs: list[str] = fresh(list)
    #: whether the script (or anything it started) used the network; None: not observed, or
    #: not ended. The result cache does not reuse a run that did (unless ``--cache always``).
    network_used: bool | None = None


@_wire
class BatchItemIn:
    __pydantic_config__ = FORBID_EXTRA
    #: the matched input file as the user's glob found it ("data/a/x.csv")
    input: str
    args: list[str]
    #: the item's own files (its input); the batch's shared files are added to every item
    files: list[FileIn]


@_wire
class BatchCreate:
    __pydantic_config__ = FORBID_EXTRA
    script: str
    files: list[FileIn]
    items: list[BatchItemIn]
    parallel: Count = 10
    env: dict[str, str] = fresh(dict)
    metadata: dict[str, str] = fresh(dict)
    timeout_s: float = 3600.0
    memory_bytes: Size = 2 * 1024**3
    #: what the work directory may hold (SPEC §14)
    disk_bytes: Size = 10 * 1024**3
    network: bool = True
    idempotency_key: str | None = None
    requirements: list[str] = fresh(list)
    dependency_source: str = "none"
    runtime: str | None = None
    max_retries: Count = 2
    cache: bool = True
    cache_always: bool = False
    surroundings: Surroundings | None = None
    #: where the script runs (SPEC §4.2): this absolute directory of the user's machine holds
    #: the execution's tree; None: the grid's own work directory
    cwd: str | None = None
    #: the script as typed, ``sys.argv[0]`` (default: ``script``)
    argv0: str | None = None
    #: directories outside ``cwd`` mounted at their own place (files with absolute paths lie
    #: in them)
    mount_roots: list[str] = fresh(list)
    #: outside paths named by arguments: what the script writes there comes back
    named_outside: list[str] = fresh(list)
    #: the shared project tree's directories that no file implies (see ExecutionCreate)
    dirs: list[str] = fresh(list)
    #: the shared project tree (see ExecutionCreate)
    tree: str | None = None


@_wire
class BatchRetry:
    __pydantic_config__ = FORBID_EXTRA
    failed_only: bool = True
    #: the current content of items' input files, by the input as the user named it
    inputs: dict[str, FileIn] = fresh(dict)


@_wire
class BatchPublic:
    id: str
    script: str
    parallel: int
    total: int
    created_at: datetime
    #: its current items by state
    counts: dict[str, int]
    done: bool
    cost_micros: int = 0
    warning: str | None = None


@_wire
class BatchItemPublic:
    id: str
    index: int
    input: str
    state: ExecutionState
    exit_code: int | None
    failure_class: FailureClass | None
    cause: str | None
    attempt: int
    started_at: datetime | None
    finished_at: datetime | None
    #: its output files, once it ended (saves a request per item when downloading)
    outputs: list[ArtifactPublic] = fresh(list)
    cached_from: str | None = None
    #: empty directories it created
    output_dirs: list[str] = fresh(list)


@_wire
class BatchItemsPublic:
    batch: BatchPublic
    data: list[BatchItemPublic]
    next_changed_after: datetime | None = None  # for the next ``?changed_after=``


@_wire
class ExecutionsPublic:
    data: list[ExecutionPublic]
    count: int
    next_cursor: str | None = None


@_wire
class LogLinePublic:
    seq: int
    attempt: int
    stream: Stream
    ts: datetime
    text: str


@_wire
class LogsPublic:
    data: list[LogLinePublic]
    last_seq: int
    state: ExecutionState
    exit_code: int | None
    done: bool
    #: the live stream's last page: the execution as it ended, and its outputs (null when
    #: there are too many to list here), so that a client needs no request after the stream
    execution: ExecutionPublic | None = None
    outputs: list[ArtifactPublic] | None = None


@_wire
class ArtifactPublic:
    path: str
    kind: ArtifactKind
    digest: str
    size: int
    created_at: datetime
    expires_at: datetime | None
    #: its bytes (base64) when the request asked for small outputs inline (a batch's items)
    content: str | None = None


@_wire
class ArtifactsPublic:
    data: list[ArtifactPublic]
    count: int


@_wire
class AccountCreate:
    __pydantic_config__ = FORBID_EXTRA
    name: str
    is_admin: bool = False


@_wire
class AccountPublic:
    id: str
    name: str
    is_admin: bool
    created_at: datetime


@_wire
class KeyCreate:
    __pydantic_config__ = FORBID_EXTRA
    account_id: str | None = None
    name: str = ""


@_wire
class KeyPublic:
    id: str
    account_id: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@_wire
class KeyCreated:
    key: str
    info: KeyPublic


@_wire
class AccountCreated:
    account: AccountPublic
    key: str


@_wire
class Me:
    account: AccountPublic
    key_id: str


@_wire
class RuntimesPublic:
    pythons: list[str]
    default: str
    presets: dict[str, list[str]]


@_wire
class WorkerPublic:
    #: the worker's id (executions name it as their worker)
    name: str
    state: str
    slots: int
    busy: int
    sandbox: str
    pythons: list[str]
    node: str = ""
    executor: str = ""
    hourly_price_micros: int = 0
    heartbeat_at: datetime | None = None
    #: when it started (an autoscaled node: was created); its billing periods run from here
    started_at: datetime | None = None
    #: an autoscaled node's provider, its id there and its kind
    provider: str | None = None
    provider_id: str | None = None
    kind: str | None = None
    #: the end of its current billing period (None: it ended)
    period_end: datetime | None = None
    #: when it was terminated or found dead
    ended_at: datetime | None = None


@_wire
class AutoscalerPublic:
    """Where the autoscaler stands (``enabled`` false: this server runs none)."""

    enabled: bool
    provider: str = ""
    kind: str = ""
    min_nodes: int = 0
    max_nodes: int = 0
    #: the policy's last word on the fleet
    status: str = ""
    #: the provider's last error (shown for ten minutes after it was overcome)
    last_error: str | None = None
    last_error_at: datetime | None = None
    #: creating new nodes waits until then after provider errors
    backoff_until: datetime | None = None


@_wire
class ErrorDetail:
    #: stable: clients match on it (``rgrid.errors``), never on the message
    code: str
    message: str
    hint: str | None = None
    details: dict[str, Any] | None = None


@_wire
class ErrorBody:
    """The one shape of every error answer (SPEC §13)."""

    error: ErrorDetail


@_wire
class Health:
    status: str
    store: str
    storage: str
    sandbox: str
    version: str


# -- JSON conversion for the client ---------------------------------------------------------


def dump(value: Any) -> Any:
    """A wire model (or a list of them) as JSON-ready values: enums by value, datetimes ISO
    8601."""
    if is_wire(type(value)):
        return {name: dump(getattr(value, name)) for name, _ in fields_of(type(value))}
    if isinstance(value, list | tuple):
        return [dump(item) for item in value]
    if isinstance(value, dict):
        return {str(k): dump(v) for k, v in value.items()}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    return value


Converter = Callable[[Any], Any]


def _identity(value: Any) -> Any:
    return value


def _converter(kind: Any) -> Converter:
    """A function turning decoded JSON into ``kind``, built once per annotation."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        inner = _converter(next(a for a in typing.get_args(kind) if a is not type(None)))
        return lambda value: None if value is None else inner(value)
    if origin is list:
        item = _converter(typing.get_args(kind)[0])
        if item is _identity:
            return list
        return lambda value: [item(v) for v in value]
    if origin is dict:
        return dict
    if is_wire(kind):
        return lambda value: load(kind, value)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind
    if kind is datetime:
        return datetime.fromisoformat
    if kind is float:
        return float
    return _identity


@functools.cache
def _fields(cls: type[Any]) -> dict[str, Converter]:
    hints = typing.get_type_hints(cls)
    return {name: _converter(hints[name]) for name, _ in fields_of(cls)}


def load(cls: type[T], data: Any) -> T:
    """Build ``cls`` from decoded JSON (unknown fields are ignored: newer servers may add some)."""
    if not isinstance(data, dict):
        raise TypeError(f"expected an object for {cls.__name__}, got {type(data).__name__}")
    fields = _fields(cls)  # type: ignore[arg-type]  # classes are hashable
    return cls(**{k: fields[k](v) for k, v in data.items() if k in fields})


# --- a runner on another machine, for one attempt (``Authorization: Attempt …``) ---------------


@_wire
class AttemptEnv:
    """The execution's ``--env`` values, in clear: only to its attempt's credential."""

    env: dict[str, str]


@_wire
class LogSegmentIn:
    __pydantic_config__ = FORBID_EXTRA
    first_seq: Annotated[int, Range(1, INT64_MAX)]
    attempt: Annotated[int, Range(1, INT32_MAX)]
    stream: Stream
    ts: datetime
    text: str
    line_count: Annotated[int, Range(1, INT32_MAX)]


@_wire
class AttemptLogsIn:
    __pydantic_config__ = FORBID_EXTRA
    segments: list[LogSegmentIn]


@_wire
class ConsoleSignIn:
    """Signing in to the web console with a pasted API key."""

    __pydantic_config__ = FORBID_EXTRA
    key: str


@_wire
class ConsoleSessionPublic:
    """The signed-in console session: who it is, and the token its state changes carry."""

    account: AccountPublic
    #: send it as the X-CSRF-Token header with every POST, PUT and DELETE
    csrf: str


@_wire
class ConsoleLinkPublic:
    """A one-time sign-in link for the web console (`rgrid console` opens it)."""

    #: the link's path on this server, with its token
    path: str
    expires_at: datetime
