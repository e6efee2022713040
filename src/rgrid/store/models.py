"""SQLAlchemy 2 ORM tables. These rows never leave ``rgrid.store``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from rgrid import digests

#: a content address column holds "blake3:" or "sha256:" and 64 hex digits
DIGEST_CHARS = digests.MAX_LENGTH


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        if value is not None and dialect.name == "sqlite":
            return value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:  # noqa: ARG002
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class AccountRow(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ConsoleSessionRow(Base):
    """A browser's signed-in session of the web console, bound to the API key it signed in
    with (revoking the key ends it). Only the cookie token's sha256 is stored."""

    __tablename__ = "console_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ConsoleLinkRow(Base):
    """A one-time sign-in link made by `rgrid console` (only its token's sha256 is stored)."""

    __tablename__ = "console_links"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class BlobRow(Base):
    __tablename__ = "blobs"

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    digest: Mapped[str] = mapped_column(String(DIGEST_CHARS), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ExecutionRow(Base):
    __tablename__ = "executions"
    __table_args__ = (
        UniqueConstraint("account_id", "idempotency_key", name="uq_executions_idempotency"),
        Index("ix_executions_claim", "state", "queued_at"),
        Index("ix_executions_account_created", "account_id", "created_at"),
        Index("ix_executions_batch", "batch_id", "state"),
        Index("ix_executions_batch_updated", "batch_id", "updated_at"),
        Index("ix_executions_cache", "account_id", "cache_key"),
        Index("ix_executions_cache_base", "account_id", "cache_base"),
        Index("ix_executions_account_script", "account_id", "script", "created_at"),
        Index("ix_executions_stdin", "account_id", "stdin_digest"),
        Index("ix_executions_tree", "account_id", "tree_digest"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    state: Mapped[str] = mapped_column(String(16))
    script: Mapped[str] = mapped_column(Text)
    args: Mapped[list[str]] = mapped_column(JSON)
    env_ciphertext: Mapped[str] = mapped_column(Text, default="")
    env_names: Mapped[list[str]] = mapped_column(JSON)
    timeout_s: Mapped[float] = mapped_column(Float)
    memory_bytes: Mapped[int] = mapped_column(BigInteger)
    disk_bytes: Mapped[int] = mapped_column(BigInteger, default=10 * 1024**3)
    cwd: Mapped[str | None] = mapped_column(Text, nullable=True)
    argv0: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: {"roots": [...], "named": [...]}: what is mounted outside cwd, what comes back from there
    mounts: Mapped[dict[str, list[str]] | None] = mapped_column(JSON, nullable=True)
    #: directories of the work directory that no input implies; empty ones the run created
    dirs: Mapped[list[str]] = mapped_column(JSON, default=list)
    output_dirs: Mapped[list[str]] = mapped_column(JSON, default=list)
    network: Mapped[bool] = mapped_column(Boolean)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    failure_class: Mapped[str | None] = mapped_column(String(32), nullable=True)
    cause: Mapped[str | None] = mapped_column(Text, nullable=True)
    hint: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    requirements: Mapped[list[str]] = mapped_column(JSON, default=list)
    dependency_source: Mapped[str] = mapped_column(String(64), default="none")
    runtime: Mapped[str | None] = mapped_column(String(64), nullable=True)
    python_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    packages: Mapped[list[str]] = mapped_column(JSON, default=list)
    max_retries: Mapped[int] = mapped_column(Integer, default=2)
    retry_of: Mapped[str | None] = mapped_column(String(40), nullable=True)
    #: why the current attempt is a retry ("worker_lost: …"); None on a first attempt
    retry_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    batch_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    #: the item's place in its batch; a retried item keeps it (the old execution is superseded)
    batch_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: the matched input file, as the user's glob found it ("data/a/x.csv")
    batch_input: Mapped[str | None] = mapped_column(Text, nullable=True)
    superseded: Mapped[bool] = mapped_column(Boolean, default=False)
    # the result cache (SPEC §12): this run's key and its parts, the run it reused, and what
    # `rgrid status` says about the cache ("hit", or why it missed)
    cache_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    cache_parts: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    cached_from: Mapped[str | None] = mapped_column(String(40), nullable=True)
    cache_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: the key without the files (the script's bytes stay in it): runs sharing it differ only
    #: in files, and one that read none of the differing files can be reused
    cache_base: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: what the run did to its inputs ({"read": [...], "written": [...]}); None: not observed
    reads: Mapped[dict[str, list[str]] | None] = mapped_column(
        JSON(none_as_null=True), nullable=True
    )
    # its cost in micros so far (every attempt's run time on its worker), and whether final
    cost_micros: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    cost_final: Mapped[bool] = mapped_column(Boolean, default=False)
    #: whether the run opened a connection or sent a datagram (observed in its own network
    #: namespace); NULL: not observed, or it has not ended. The cache does not reuse such runs.
    network_used: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    #: the user's time zone and locale: {"time_zone": …, "locale": {…}}; NULL: the defaults
    surroundings: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # piped stdin (a blob unless empty); NULL: none, the script gets end-of-file at once
    stdin_digest: Mapped[str | None] = mapped_column(String(DIGEST_CHARS), nullable=True)
    stdin_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: the project tree it carries (``TreeRow``); NULL: only its named files
    tree_digest: Mapped[str | None] = mapped_column(String(DIGEST_CHARS), nullable=True)
    # stamped on every insert and update: a batch's followers ask only for what changed
    updated_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime, nullable=True, default=_now, onupdate=_now
    )


class BatchRow(Base):
    __tablename__ = "batches"
    __table_args__ = (
        UniqueConstraint("account_id", "idempotency_key", name="uq_batches_idempotency"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    script: Mapped[str] = mapped_column(Text)
    #: at most this many of its executions run at once (enforced when claiming)
    parallel: Mapped[int] = mapped_column(Integer)
    total: Mapped[int] = mapped_column(Integer)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ExecutionMetadataRow(Base):
    __tablename__ = "execution_metadata"
    __table_args__ = (Index("ix_execution_metadata_kv", "key", "value"),)

    execution_id: Mapped[str] = mapped_column(
        ForeignKey("executions.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[str] = mapped_column(String(1000))


class ArtifactRow(Base):
    __tablename__ = "artifacts"
    __table_args__ = (Index("ix_artifacts_digest", "digest"),)  # retention: who still uses a blob

    execution_id: Mapped[str] = mapped_column(
        ForeignKey("executions.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    path: Mapped[str] = mapped_column(String(4096), primary_key=True)
    digest: Mapped[str] = mapped_column(String(DIGEST_CHARS))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class WorkerRow(Base):
    """A worker: a process with slots that runs executions (``ExecutionRow.worker`` is its id),
    what it charges, and whether it is alive. Billing, ``/workers``, ``/metrics`` and recovery
    read it."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    node: Mapped[str] = mapped_column(String(200))
    executor: Mapped[str] = mapped_column(String(32))
    slots: Mapped[int] = mapped_column(Integer)
    hourly_price_micros: Mapped[int] = mapped_column(BigInteger)
    billing_period_s: Mapped[float] = mapped_column(Float)
    #: its billing periods run back to back from here
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: active, stopped (said goodbye), lost (stopped answering); an autoscaled node's:
    #: provisioning, active, draining, terminated, dead
    state: Mapped[str] = mapped_column(String(16))
    sandbox: Mapped[str] = mapped_column(Text, default="")
    pythons: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: an autoscaled node's provider ("local", "hetzner"), its id there and its kind
    provider: Mapped[str | None] = mapped_column(String(64), nullable=True)
    provider_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    kind: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: when it was terminated or found dead: its last billing period is the one holding this
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class TreeRow(Base):
    """A project tree (``domain.Tree``), stored once per account and shared by the executions
    that name it (``ExecutionRow.tree_digest``)."""

    __tablename__ = "trees"

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    digest: Mapped[str] = mapped_column(String(DIGEST_CHARS), primary_key=True)
    #: directories that no file implies
    dirs: Mapped[list[str]] = mapped_column(JSON, default=list)
    file_count: Mapped[int] = mapped_column(Integer)
    total_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TreeFileRow(Base):
    __tablename__ = "tree_files"
    # retention: which trees hold a blob
    __table_args__ = (Index("ix_tree_files_blob", "account_id", "digest"),)

    account_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tree_digest: Mapped[str] = mapped_column(String(DIGEST_CHARS), primary_key=True)
    path: Mapped[str] = mapped_column(String(4096), primary_key=True)
    digest: Mapped[str] = mapped_column(String(DIGEST_CHARS))
    size: Mapped[int] = mapped_column(BigInteger)


class LogChunkRow(Base):
    """A batch of consecutive log lines of one attempt, as the runner shipped it.

    One row per batch (not per line) keeps a chatty script's logging to one insert per flush.
    ``lines`` holds segments ``[stream, unix time, text]``, where ``text`` holds one or more
    lines (``domain.segment_lines``); lines are numbered consecutively from ``first_seq``.
    """

    __tablename__ = "log_chunks"
    __table_args__ = (Index("ix_log_chunks_last_seq", "execution_id", "last_seq"),)

    execution_id: Mapped[str] = mapped_column(
        ForeignKey("executions.id", ondelete="CASCADE"), primary_key=True
    )
    first_seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_seq: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    lines: Mapped[list[list[Any]]] = mapped_column(JSON)


class RunRow(Base):
    """One attempt's time on a worker: what billing periods are split by."""

    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_worker_span", "worker", "started_at", "ended_at"),)

    execution_id: Mapped[str] = mapped_column(
        ForeignKey("executions.id", ondelete="CASCADE"), primary_key=True
    )
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    worker: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BillingPeriodRow(Base):
    """A closed billing period of a worker: its price, and the part no execution used."""

    __tablename__ = "billing_periods"

    worker: Mapped[str] = mapped_column(String(200), primary_key=True)
    start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    end: Mapped[datetime] = mapped_column(UTCDateTime)
    price_micros: Mapped[int] = mapped_column(BigInteger)
    idle_micros: Mapped[int] = mapped_column(BigInteger)


class CostShareRow(Base):
    """An execution's share of one billing period."""

    __tablename__ = "cost_shares"

    worker: Mapped[str] = mapped_column(String(200), primary_key=True)
    period_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    execution_id: Mapped[str] = mapped_column(
        ForeignKey("executions.id", ondelete="CASCADE"), primary_key=True
    )
    run_us: Mapped[int] = mapped_column(BigInteger)
    micros: Mapped[int] = mapped_column(BigInteger)


class SpendingLimitRow(Base):
    """An account's spending limit per period (day, week or month)."""

    __tablename__ = "spending_limits"

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    limit_micros: Mapped[int] = mapped_column(BigInteger)
    period: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
