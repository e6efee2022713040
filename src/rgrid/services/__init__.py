"""Use cases of the grid. Route handlers call one function here; these call store/storage/executor.

``Grid`` bundles what every service needs and is built once in the API's lifespan.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from rgrid import domain
from rgrid.services.events import Notifier
from rgrid.services.keycache import KeyCache
from rgrid.services.secrets import SecretBox
from rgrid.services.siblings import Siblings
from rgrid.services.treecache import TreeCache
from rgrid.settings import ServerSettings
from rgrid.storage import ObjectStorage


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclasses.dataclass
class Transfers:
    """Bytes of blob bodies this server received and sent: on the wire, and decoded."""

    received_wire: int = 0
    received: int = 0
    sent_wire: int = 0
    sent: int = 0


@dataclasses.dataclass
class Grid:
    settings: ServerSettings
    sessions: async_sessionmaker[AsyncSession]
    storage: ObjectStorage
    notifier: Notifier
    secrets: SecretBox
    #: Python minor versions the workers offer ("3.11"), and the default one
    pythons: tuple[str, ...] = ()
    default_python: str = ""
    #: set by the dispatcher: wake it after a submit, and stop a locally running execution
    wake_dispatcher: Callable[[], None] = lambda: None
    cancel_local: Callable[[str], bool] = lambda _execution_id: False
    transfers: Transfers = dataclasses.field(default_factory=Transfers)
    #: project trees' listings recently used (``services.trees``)
    trees: TreeCache = dataclasses.field(default_factory=TreeCache)
    #: API keys authenticated in the last seconds (``services.accounts``)
    keys: KeyCache = dataclasses.field(default_factory=KeyCache)
    #: whether the storage deletes blobs unwritten for long by itself (an S3 lifecycle rule)
    blobs_age_out: bool = False
    #: where the autoscaler stands (None: this process runs none)
    autoscaler: domain.AutoscalerStatus | None = None
    #: the figures of this server's processes as a whole (set by the app's lifespan)
    siblings: Siblings | None = None
