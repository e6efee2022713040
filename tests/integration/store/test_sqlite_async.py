"""SQLite for the async engine (``store.sqlite_async``): SQLite's work runs off the event loop;
a statement that the database's lock refuses waits asleep, so the loop goes on meanwhile (and
with it the transaction that holds the lock, when it is this process's own); after its timeout
it fails clearly."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from rgrid import errors, store
from rgrid.store import sqlite_async


class Ticker:
    """Counts the event loop's turns of 10 ms while it runs: it stops counting if the loop is
    held up."""

    def __init__(self) -> None:
        self.ticks = 0
        self._task = asyncio.create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            self.ticks += 1

    def stop(self) -> None:
        self._task.cancel()


async def test_a_statement_refused_by_the_lock_waits_asleep_then_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")  # another connection holds the write lock
    holder.execute("INSERT INTO t VALUES (1)")

    waiter = await sqlite_async.connect(str(path), timeout=10.0)
    ticker = Ticker()
    asyncio.get_running_loop().call_later(0.3, holder.execute, "COMMIT")
    started = time.monotonic()
    cursor = waiter.cursor()
    await cursor.execute("INSERT INTO t VALUES (?)", (2,))
    await waiter.commit()
    waited = time.monotonic() - started
    ticker.stop()

    assert 0.25 <= waited < 5
    assert ticker.ticks >= 10  # the loop turned all along (it would be 0 if the wait blocked)
    assert holder.execute("SELECT x FROM t ORDER BY x").fetchall() == [(1,), (2,)]
    await waiter.close()
    holder.close()


async def test_a_long_statement_does_not_hold_up_the_event_loop(tmp_path: Path) -> None:
    connection = await sqlite_async.connect(str(tmp_path / "db.sqlite"), timeout=10.0)
    ticker = Ticker()
    started = time.monotonic()
    cursor = connection.cursor()
    await cursor.execute(  # SQLite counting to three million: a fraction of a second
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000) "
        "SELECT count(*) FROM n"
    )
    took = time.monotonic() - started
    ticker.stop()
    assert await cursor.fetchall() == [(3_000_000,)]
    assert await cursor.fetchall() == []  # fetched once
    assert took > 0.1
    assert ticker.ticks >= took / 0.01 / 3  # the loop kept turning while SQLite counted
    await connection.close()


async def test_a_brief_transactions_statements_run_on_the_loop_others_on_a_thread(
    tmp_path: Path,
) -> None:
    engine = store.make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    sessions = store.session_factory(engine)

    async def thread_of_a_statement(brief: bool) -> int:
        async with store.transaction(sessions, brief=brief) as session:
            connection = await session.connection()
            raw = await connection.get_raw_connection()
            await raw.driver_connection.create_function("rgrid_thread", 0, threading.get_ident)
            return int((await session.execute(text("SELECT rgrid_thread()"))).scalar_one())

    loop_thread = threading.get_ident()
    assert await thread_of_a_statement(brief=True) == loop_thread
    assert await thread_of_a_statement(brief=False) != loop_thread
    async with store.transaction(sessions, brief=True) as session:
        with sqlite_async.brief(False):  # a part that may be big (a tree's listing)
            thread = (await session.execute(text("SELECT rgrid_thread()"))).scalar_one()
    assert thread != loop_thread
    await engine.dispose()


async def test_a_call_after_a_cancelled_one_waits_for_it_to_end(tmp_path: Path) -> None:
    """A task cancelled while its statement runs on a thread leaves the statement running
    there; the connection's next call (the rollback that follows a cancel) must not use the
    connection between the steps of that statement's fetch, from another thread."""
    connection = await sqlite_async.connect(str(tmp_path / "db.sqlite"), timeout=10.0)
    many_rows = connection.cursor().execute(  # a million rows, fetched step by step
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000) "
        "SELECT i FROM n"
    )
    started = time.monotonic()
    task = asyncio.create_task(many_rows)
    await asyncio.sleep(0.02)  # it runs on a thread now
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    cancelled_at = time.monotonic() - started
    next_call = connection.cursor()
    await next_call.execute("SELECT 1")
    next_done_at = time.monotonic() - started
    assert await next_call.fetchall() == [(1,)]
    # the fetch takes longer than the cancel: the next call waited for its end
    assert next_done_at > cancelled_at + 0.1, (cancelled_at, next_done_at)
    await connection.close()


async def test_a_connection_ended_under_a_running_call_closes_once_the_call_ended(
    tmp_path: Path,
) -> None:
    """SQLAlchemy ends a connection whose statement's task was cancelled at once (``stop``):
    the statement still running on its thread finishes on an open connection, and the event
    loop is not held up meanwhile."""
    connection = await sqlite_async.connect(str(tmp_path / "db.sqlite"), timeout=10.0)
    task = asyncio.create_task(
        connection.cursor().execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000) "
            "SELECT i FROM n"
        )
    )
    await asyncio.sleep(0.02)  # it runs on a thread now
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    leftover = connection._calls.leftover
    assert leftover is not None
    started = time.monotonic()
    connection.stop()
    assert time.monotonic() - started < 0.05  # not waited for on the loop
    await asyncio.wait([asyncio.wrap_future(leftover)])
    assert leftover.exception() is None  # it was not closed under the fetch
    with pytest.raises(ValueError, match="no active connection"):
        connection.cursor()


async def test_a_statement_gives_up_after_its_timeout(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")

    waiter = await sqlite_async.connect(str(path), timeout=0.2)
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        await waiter.cursor().execute("INSERT INTO t VALUES (1)")
    assert 0.2 <= time.monotonic() - started < 3
    holder.execute("ROLLBACK")
    await waiter.close()
    holder.close()


async def test_two_transactions_of_one_process_writing_at_once_both_commit(
    tmp_path: Path,
) -> None:
    """The first holds the write lock while it awaits; the second's write waits for it asleep.
    Waiting in SQLite's busy handler instead, on the loop or on a thread the first's commit
    needs, would be a deadlock until the busy timeout (30 s) and then an error."""
    engine = store.make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE t (x INTEGER)"))
    sessions = store.session_factory(engine)

    async def write(value: int, hold_s: float) -> None:
        async with store.transaction(sessions) as session:
            await session.execute(text("INSERT INTO t VALUES (:x)"), {"x": value})
            await asyncio.sleep(hold_s)  # the lock is held across an await

    started = time.monotonic()
    async with asyncio.timeout(20):
        first = asyncio.create_task(write(1, 0.3))
        await asyncio.sleep(0.05)  # the first has the lock
        await write(2, 0)
        await first
    assert time.monotonic() - started < 5
    async with store.reading(sessions) as session:
        rows = (await session.execute(text("SELECT x FROM t ORDER BY x"))).all()
    assert [tuple(row) for row in rows] == [(1,), (2,)]
    await engine.dispose()


async def test_the_grids_engine_reports_a_lock_held_too_long_as_a_store_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "SQLITE_BUSY_TIMEOUT_MS", 200)
    path = tmp_path / "db.sqlite"
    engine = store.make_engine(f"sqlite:///{path}")
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE t (x INTEGER)"))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(errors.StoreError, match="OperationalError"):
        async with store.transaction(store.session_factory(engine)) as session:
            await session.execute(text("INSERT INTO t VALUES (1)"))
    holder.execute("ROLLBACK")
    holder.close()
    await engine.dispose()
