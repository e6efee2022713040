"""Settings for each side, read once at the entrypoint from ``RGRID_*`` variables and passed down."""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from pathlib import Path

from pydantic import DirectoryPath, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from rgrid import bounds

MAX_API_PROCESSES = 64
LEASE_S = 30.0  # a running execution's lease; renewed every third of it
DEFAULT_TIMEOUT_S = 3600.0
DEFAULT_MEMORY_BYTES = 2 * 1024**3
MAX_OUTPUT_BYTES = 10 * 1024**3
MAX_OUTPUT_FILES = 10_000
MAX_LOG_BYTES = 64 * 1024**2


def default_home() -> Path:
    """``~/.rgrid/local``: where the local grid keeps its database, blobs and keys."""
    return Path.home() / ".rgrid" / "local"


class WorkerSettings(BaseSettings):
    """A worker's configuration: where it keeps its work and environments, its interpreters,
    its limits (``RGRID_`` + the upper-case field name). What the runner needs, and all it
    reads; a server is a worker too (``ServerSettings`` adds the grid's own)."""

    model_config = SettingsConfigDict(env_prefix="RGRID_", extra="ignore")

    home: Path = Field(default_factory=default_home)
    worker_name: str = Field(default_factory=lambda: os.uname().nodename)
    max_output_bytes: int = MAX_OUTPUT_BYTES
    max_output_files: int = MAX_OUTPUT_FILES
    max_log_bytes: int = MAX_LOG_BYTES
    #: free space the grid keeps on its disk: below it no execution starts, and a script
    #: writing then is stopped (``disk_limit``)
    disk_reserve_bytes: int = Field(default=1024**3, ge=0)
    #: the project tree is a read-only layer built once and shared by executions, under an
    #: overlay per execution (where the grid is root and runs bubblewrap), instead of a copy of
    #: every file for every execution (docs/sandbox.md)
    overlay_inputs: bool = True
    #: extra interpreters for runtimes (comma-separated paths), besides the ones found
    pythons: str = ""
    #: environment cache budget; least recently used environments beyond it are removed
    env_cache_bytes: int = 20 * 1024**3
    #: a directory of wheels and sdists that environment builds may install from besides the
    #: index (uv --find-links), mounted read-only into the build sandbox
    find_links: DirectoryPath | None = None
    #: record which input files each run opened (fanotify; needs root and bubblewrap), so the
    #: result cache ignores edits to files a run never read; off: whole input trees must match
    read_tracking: bool = True

    @property
    def work_root(self) -> Path:
        return self.home / "work"

    @property
    def envs_root(self) -> Path:
        return self.home / "envs"


class ServerSettings(WorkerSettings):
    """The grid's configuration (``RGRID_`` + the upper-case field name): its own worker's
    (``WorkerSettings``), and the server's."""

    model_config = SettingsConfigDict(env_prefix="RGRID_", extra="ignore")

    database_url: str | None = None
    storage_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8765
    #: processes answering the API on the port; above 1 (PostgreSQL only) the main process
    #: runs the scripts and answers none itself (``api.processes``)
    api_processes: int = Field(default=1, ge=1, le=MAX_API_PROCESSES)
    slots: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    #: where claimed executions run (``executor.from_url``): ``local`` (this host's slots) or
    #: ``ray://HOST:PORT`` (the nodes of a Ray cluster)
    executor: str = "local"
    #: the URL worker nodes reach this server at (default: http://HOST:PORT of this server)
    control_url: str | None = None
    lease_s: float = Field(default=LEASE_S, gt=0)
    admin_key: str | None = None  # bootstrap key for a fresh grid; the local daemon generates one
    #: Fernet key encrypting --env values; servers sharing one database must share it
    #: (default: generated into RGRID_HOME/secret.key)
    secret_key: str | None = None
    max_batch_items: int = 10_000
    #: hosts that requirement files may name in --index-url / --extra-index-url and in
    #: `name @ https://host/...` direct references (any other direct reference is refused)
    allowed_index_hosts: list[str] = Field(default_factory=list)
    #: inputs and outputs expire this long after they were recorded (fractions allowed); the
    #: janitor then deletes blobs nothing live references. Logs and executions are kept.
    retention_days: float = Field(default=30.0, gt=0)
    #: what this worker costs per hour, in micros (1 EUR = 1,000,000), shared by its slots;
    #: the replaced product's stated price: EUR 0.008 an hour for a 2-slot node
    hourly_price_micros: int = Field(default=8000, ge=0)
    #: a worker's billing period (its price is split when one closes); tests use seconds
    billing_period_s: float = Field(default=3600.0, gt=0)
    #: the largest JSON request body (blob uploads stream and are not bound by it)
    max_body_bytes: int = Field(default=bounds.MAX_BODY_BYTES, ge=64 * 1024)
    #: a bearer token that may read /metrics (besides an admin key); none: admin keys only
    metrics_token: str | None = None

    # -- the autoscaler (docs/autoscaling.md); only with RGRID_EXECUTOR=ray://
    #: who makes machines: ``local`` (Ray worker nodes as processes on this host), ``hetzner``
    #: (Hetzner Cloud), or ``MODULE:CLASS`` (a provider of your own); none: no autoscaler
    autoscale_provider: str | None = None
    #: the kind of machine to create (local: ``cpuN``; hetzner: a server type such as cx22)
    autoscale_kind: str | None = None
    autoscale_min_nodes: int = Field(default=0, ge=0)
    autoscale_max_nodes: int = Field(default=10, ge=0)
    #: the most the autoscaled fleet may cost an hour, in micros (none: only max nodes bound it)
    autoscale_max_hourly_micros: int | None = Field(default=None, ge=0)
    #: how long queued work may take to drain before another node is worth it
    autoscale_horizon_s: float = Field(default=300.0, gt=0)
    autoscale_join_timeout_s: float = Field(default=600.0, gt=0)
    autoscale_heartbeat_timeout_s: float = Field(default=60.0, gt=0)
    #: an idle node is drained and terminated this long before its billing period ends
    autoscale_drain_before_end_s: float = Field(default=120.0, gt=0)
    #: the run time assumed while none has been seen
    autoscale_default_duration_s: float = Field(default=60.0, gt=0)
    #: how often the autoscaler looks at the queue and the fleet
    autoscale_tick_s: float = Field(default=5.0, gt=0)
    #: the Ray address new nodes join (default: the executor's HOST:PORT)
    autoscale_join_address: str | None = None
    #: the Hetzner Cloud API token (never logged)
    hetzner_token: SecretStr | None = None
    hetzner_endpoint: str = "https://api.hetzner.cloud/v1"
    hetzner_location: str = "fsn1"
    hetzner_image: str = "ubuntu-24.04"
    #: SSH key names given to new servers (comma-separated; none: no key)
    hetzner_ssh_keys: str = ""
    #: the label value marking this grid's servers (``rgrid-grid=<value>``)
    hetzner_label: str = "rgrid"
    #: what the servers' cloud-init installs with pip (default: this rgrid's worker extra)
    hetzner_install: str | None = None

    @property
    def retention(self) -> timedelta:
        return timedelta(days=self.retention_days)

    @property
    def resolved_control_url(self) -> str:
        """Where worker nodes reach this server: ``control_url``, else where it listens (by
        the machine's name when it listens on every interface)."""
        if self.control_url:
            return self.control_url.rstrip("/")
        host = socket.gethostname() if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.home / 'rgrid.db'}"

    @property
    def resolved_storage_url(self) -> str:
        return self.storage_url or (self.home / "blobs").resolve().as_uri()
