"""The work signal over PostgreSQL ``LISTEN``/``NOTIFY``: one connection per server, outside the
pool, that listens on ``rgrid_work`` and sends a ``NOTIFY`` after each publish."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg

from rgrid import tasks

logger = logging.getLogger(__name__)

CHANNEL = "rgrid_work"
#: how the connection shows in ``pg_stat_activity``
APPLICATION_NAME = "rgrid-work-signal"
RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 30.0
#: a connection that served this long was healthy: the next loss retries quickly again
HEALTHY_AFTER_S = 10.0
CLOSE_TIMEOUT_S = 2.0


class PostgresWorkSignal:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._task: asyncio.Task[None] | None = None
        self._attention = asyncio.Event()  # a publish to send, or the connection was lost
        self._pending = False
        self._lost = False

    def start(self, on_work: Callable[[], None]) -> None:
        self._task = asyncio.create_task(self._run(on_work), name="work-signal")

    def publish(self) -> None:
        self._pending = True
        self._attention.set()

    async def close(self) -> None:
        await tasks.cancel_and_wait(self._task)
        self._task = None

    async def _run(self, on_work: Callable[[], None]) -> None:
        """Keep a listening connection; while there is none, servers fall back to polling."""
        loop = asyncio.get_running_loop()
        delay = RECONNECT_MIN_S
        while True:
            began = loop.time()
            try:
                await self._serve(on_work)
            except Exception as exc:  # whatever it was, this loop must outlive it
                logger.warning(
                    "work signal connection: %s (servers poll until it is back)",
                    exc,
                    extra={"action": "work_signal_lost"},
                )
            if loop.time() - began > HEALTHY_AFTER_S:
                delay = RECONNECT_MIN_S
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _serve(self, on_work: Callable[[], None]) -> None:
        connection = await asyncpg.connect(
            self._dsn, server_settings={"application_name": APPLICATION_NAME}
        )
        self._lost = False

        def lost(_connection: Any) -> None:
            self._lost = True
            self._attention.set()

        try:
            connection.add_termination_listener(lost)
            await connection.add_listener(CHANNEL, lambda *_: on_work())
            on_work()  # work may have been queued while nobody listened
            while True:
                await self._attention.wait()
                self._attention.clear()
                if self._lost:
                    raise ConnectionResetError("the database closed the connection")
                if self._pending:
                    self._pending = False  # publishes meanwhile are covered by this NOTIFY
                    await connection.execute(f"NOTIFY {CHANNEL}")
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await connection.close()
