"""Telling every server that shares the database that work was queued, so an idle one starts it
at once instead of at its next poll.

``from_engine`` picks the implementation for the database: PostgreSQL's ``LISTEN``/``NOTIFY``
reaches every server; with SQLite only this process is told (others still poll).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine


class WorkSignal(Protocol):
    """A wake-up shared by the servers of one database. It carries no data: a woken server
    asks the database what is waiting, so a lost or doubled signal costs at most one poll."""

    def start(self, on_work: Callable[[], None]) -> None:
        """Begin calling ``on_work`` (in the running event loop) whenever any server publishes."""

    def publish(self) -> None:
        """Say that work was queued (call after the commit that queued it); never blocks and
        never raises. Bursts may be coalesced into one signal."""

    async def close(self) -> None:
        """Stop listening and release the connection."""


def from_engine(engine: AsyncEngine) -> WorkSignal:
    if engine.dialect.name == "postgresql":
        from rgrid.store.signals.postgres import PostgresWorkSignal

        dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        return PostgresWorkSignal(dsn)
    from rgrid.store.signals.local import InProcessWorkSignal

    return InProcessWorkSignal()
