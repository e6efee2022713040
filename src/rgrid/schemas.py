"""Wire models shared by the client and the API (never ORM rows)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from rgrid.domain import ArtifactKind, ExecutionState, FailureClass, Stream

Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
RelPath = Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileIn(Model):
    path: RelPath
    sha256: Sha256
    size: int = Field(ge=0)


class BlobsQuery(Model):
    sha256: list[Sha256] = Field(max_length=100_000)


class BlobsMissing(Model):
    missing: list[str]


class ExecutionCreate(Model):
    script: RelPath
    args: list[str] = Field(default_factory=list, max_length=10_000)
    files: list[FileIn] = Field(default_factory=list, max_length=100_000)
    env: dict[str, str] = Field(default_factory=dict)
    metadata: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=3600.0, gt=0, le=7 * 24 * 3600)
    memory_bytes: int = Field(default=2 * 1024**3, ge=16 * 1024**2, le=1024**4)
    network: bool = True
    idempotency_key: str | None = Field(default=None, max_length=200)


class ExecutionPublic(Model):
    id: str
    state: ExecutionState
    script: str
    args: list[str]
    env_names: list[str]
    metadata: dict[str, str]
    timeout_s: float
    memory_bytes: int
    network: bool
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


class ExecutionsPublic(Model):
    data: list[ExecutionPublic]
    count: int
    next_cursor: str | None = None


class LogLinePublic(Model):
    seq: int
    attempt: int
    stream: Stream
    ts: datetime
    text: str


class LogsPublic(Model):
    data: list[LogLinePublic]
    last_seq: int
    state: ExecutionState
    exit_code: int | None
    done: bool


class ArtifactPublic(Model):
    path: str
    kind: ArtifactKind
    sha256: str
    size: int
    created_at: datetime
    expires_at: datetime | None


class ArtifactsPublic(Model):
    data: list[ArtifactPublic]
    count: int


class AccountCreate(Model):
    name: str = Field(min_length=1, max_length=200)
    is_admin: bool = False


class AccountPublic(Model):
    id: str
    name: str
    is_admin: bool
    created_at: datetime


class KeyCreate(Model):
    account_id: str | None = None
    name: str = Field(default="", max_length=200)


class KeyPublic(Model):
    id: str
    account_id: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(Model):
    key: str
    info: KeyPublic


class AccountCreated(Model):
    account: AccountPublic
    key: str


class Me(Model):
    account: AccountPublic
    key_id: str


class Health(Model):
    status: str
    store: str
    storage: str
    sandbox: str
    version: str
