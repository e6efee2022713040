"""PostgreSQL's pooled connections are checked before use without a round trip each time: one
the server closed is replaced, one idle for a while is pinged (``store.make_engine``)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import text

from rgrid import store

pytestmark = pytest.mark.postgres


async def _backend_pid(engine: store.AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def test_a_connection_the_server_closed_is_replaced_before_use(
    postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = store.make_engine(postgres_database)
    admin = await asyncpg.connect(postgres_database.replace("+asyncpg", ""))
    try:
        first = await _backend_pid(engine)
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", first)
        await asyncio.sleep(0.2)  # the driver reads the server's goodbye
        # used again at once (no idle ping): the pool still hands out a working connection
        second = await _backend_pid(engine)
        assert second != first

        # idle long enough: pinged first, and a connection lost without a word is replaced
        monkeypatch.setattr(store, "PING_IDLE_S", 0.0)
        pinged = await _backend_pid(engine)
        assert pinged == second
    finally:
        await admin.close()
        await engine.dispose()


async def test_a_busy_pool_reuses_connections_without_pinging(
    postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection

    pings: list[object] = []
    real_ping = AsyncAdapt_asyncpg_connection.ping
    monkeypatch.setattr(
        AsyncAdapt_asyncpg_connection, "ping", lambda self: (pings.append(self), real_ping(self))
    )
    engine = store.make_engine(postgres_database)
    try:
        for _ in range(5):
            await _backend_pid(engine)
        assert pings == []  # a round trip (three: BEGIN, ";", ROLLBACK) saved on each use
        monkeypatch.setattr(store, "PING_IDLE_S", 0.0)
        await _backend_pid(engine)
        assert len(pings) == 1
    finally:
        await engine.dispose()
