"""The work signal between servers of one database: PostgreSQL LISTEN/NOTIFY, SQLite in-process."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import asyncpg
import pytest
from tests.conftest import free_port

from rgrid import store
from rgrid.store import signals
from rgrid.store.signals.postgres import APPLICATION_NAME

WAIT_S = 10.0


class Wakes:
    """Counts the wake-ups a signal delivered, and lets a test wait for a count."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = asyncio.Event()

    def __call__(self) -> None:
        self.count += 1
        self._changed.set()

    async def until(self, count: int) -> None:
        async def reached() -> None:
            while self.count < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(reached(), WAIT_S)


@pytest.mark.postgres
async def test_a_publish_on_one_server_wakes_the_other(postgres_database: str) -> None:
    engines = [store.make_engine(postgres_database) for _ in range(2)]
    first, second = (signals.from_engine(engine) for engine in engines)
    wakes = [Wakes(), Wakes()]
    first.start(wakes[0])
    second.start(wakes[1])
    try:
        for each in wakes:
            await each.until(1)  # the wake given on connecting: work may have been queued before
        first.publish()
        await wakes[1].until(2)
        await wakes[0].until(2)  # a server hears its own NOTIFY too: one more look, harmless
        second.publish()
        await wakes[0].until(3)
        await wakes[1].until(3)
        for _ in range(50):  # a burst between two turns of the loop is sent as one NOTIFY
            first.publish()
        await wakes[1].until(4)
        await asyncio.sleep(0.5)
        assert wakes[1].count == 4
    finally:
        for signal in (first, second):
            await signal.close()
        for engine in engines:
            await engine.dispose()


@pytest.mark.postgres
async def test_a_lost_connection_is_made_again_and_wakes_on_reconnect(
    postgres_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = store.make_engine(postgres_database)
    listener, publisher = signals.from_engine(engine), signals.from_engine(engine)
    wakes = Wakes()
    listener.start(wakes)
    publisher.start(lambda: None)
    database = postgres_database.rsplit("/", 1)[1]
    admin = await asyncpg.connect(postgres_database.replace("+asyncpg", ""))
    try:
        await wakes.until(1)
        with caplog.at_level(logging.WARNING, logger="rgrid.store.signals.postgres"):
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = $1 AND datname = $2",
                APPLICATION_NAME,
                database,
            )
            assert killed == 2
            await wakes.until(2)  # connected again: told to look, as work may have come meanwhile
        assert any(r.action == "work_signal_lost" for r in caplog.records)  # type: ignore[attr-defined]
        # the publisher's connection comes back too (after a 0.5 s back-off; later on a busy
        # machine): publish until a notification gets through
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while wakes.count < 3:
            assert asyncio.get_running_loop().time() < deadline, "no wake after the reconnect"
            publisher.publish()
            await asyncio.sleep(0.5)
    finally:
        await admin.close()
        await listener.close()
        await publisher.close()
        await engine.dispose()


async def test_an_unreachable_database_neither_blocks_nor_raises() -> None:
    engine = store.make_engine(f"postgresql://postgres@127.0.0.1:{free_port()}/nothing")
    signal = signals.from_engine(engine)
    wakes = Wakes()
    signal.start(wakes)
    signal.publish()  # nobody can be told; the servers' polling still finds the work
    await asyncio.sleep(0.3)
    await asyncio.wait_for(signal.close(), WAIT_S)
    assert wakes.count == 0
    await engine.dispose()


async def test_sqlite_wakes_this_process_only(tmp_path: Path) -> None:
    engine = store.make_engine(f"sqlite:///{tmp_path / 'rgrid.db'}")
    signal = signals.from_engine(engine)
    wakes = Wakes()
    signal.start(wakes)
    signal.publish()
    assert wakes.count == 1
    await signal.close()
    signal.publish()
    assert wakes.count == 1
    await engine.dispose()
